"""`paddy collab` end to end: load, check, split, train, evaluate, explain, and write one output folder.

The output folder (default runs/collab) holds model.pth (see `fitted`), metrics.json (the resolved config, data
source, split, valid_mse, valid_rmse, seconds_per_epoch, per-epoch history, top-N metrics), pca_items.png and
crosstab.csv. It is built in a temporary folder beside the target and moved into place at the end, so bad input
or a crash leaves nothing behind, and an older collab output there is replaced whole.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddy.collab.data import crosstab, kfold_splits, load_ratings, split_frames
from paddy.collab.evaluate import evaluate_ratings, top_n_metrics
from paddy.collab.fitted import save_model
from paddy.collab.interpret import MIN_COUNT, item_biases, pca_items, plot_pca, similar_items, similarity_measure
from paddy.collab.train import fit_collab, resolve_y_range
from paddy.core import atomic, lock
from paddy.core.errors import ConfigError, DataError

METRICS_FILE = "metrics.json"
PCA_FILE = "pca_items.png"
CROSSTAB_FILE = "crosstab.csv"


@dataclass
class CollabReport:
    """What a run produced, for printing: metrics, biases, similar items, and where the files went."""

    metrics: dict
    biases: tuple | None
    similar: tuple  # (title, [(title, similarity), ...], what the similarity is)
    out: Path
    history: list


def check_collab_out(out: str | Path) -> None:
    """Refuse an output folder that holds something other than an earlier collab output."""
    out = Path(out)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / METRICS_FILE).is_file()):
        raise ConfigError(f"--out {out} exists and is not a collab output folder; choose a new or empty folder")


def train_splits(ratings, config, folds=1):
    """(train, valid) frame pairs: k-fold when `folds` > 1, else the configured split."""
    if folds > 1 and config.split != "random":
        raise ConfigError(f"--kfold {folds} and --split {config.split} are two different splits; give one of them")
    if folds > 1:
        frame = ratings.frame
        return [(frame.iloc[t].reset_index(drop=True), frame.iloc[v].reset_index(drop=True))
                for t, v in kfold_splits(len(frame), folds, config.seed)]
    train, valid = split_frames(ratings, config.split, config.valid_pct, config.seed)
    if len(train) == 0 or len(valid) == 0:
        raise DataError(f"the {config.split} split leaves {len(train)} training and {len(valid)} validation "
                        "ratings; both need at least one: give more ratings or another --valid-pct")
    return [(train, valid)]


def fit_and_score(ratings, config, folds=1, k=10, progress=True):
    """Train on each split; returns the first fit and metrics (MSE/RMSE per fold and their mean, top-N on fold 1)."""
    first, scores, topn, seconds_fit = None, [], None, []
    for train, valid in train_splits(ratings, config, folds):
        started = time.perf_counter()
        result = fit_collab(train, valid, config, ratings.titles, progress)
        seconds_fit.append(time.perf_counter() - started)
        scores.append(evaluate_ratings(result.fitted, valid))
        if first is None:
            first, topn = result, top_n_metrics(result.fitted, valid, k=k)
    mean_mse = sum(s["mse"] for s in scores) / len(scores)
    # k-fold: the held-out ratings of all folds (every rating once), described by the mean MSE printed beside them
    valid = {"mse": mean_mse, "rmse": mean_mse ** 0.5, "n": sum(s["n"] for s in scores),
             "cold": sum(s["cold"] for s in scores)}
    seconds = [row["seconds"] for row in first.history]
    metrics = {"valid_mse": mean_mse, "valid_rmse": mean_mse ** 0.5,
               "seconds_per_epoch": sum(seconds) / len(seconds), "threads": first.threads,
               "seconds_fit": round(sum(seconds_fit) / len(seconds_fit), 2), "blend": first.info or None,
               "folds": [{"fold": i, **s} for i, s in enumerate(scores)] if folds > 1 else None,
               "valid": valid, "top_n": topn, "history": first.history}
    return first, metrics


def run_collab(config, data="ml-latest-small", out="runs/collab", folds=1, columns=(None, None, None),
               progress=True):
    """Train, evaluate and explain a collab model on `data`; write model, metrics and plots to `out`.

    The output is locked for the whole run (a second run into it is refused in one line), and the half-built
    folders a killed run left beside it are removed first."""
    check_collab_out(out)
    with lock.hold(out, "collab output"):
        atomic.remove_stale_temps(out)
        return _run_collab_locked(config, data, out, folds, columns, progress)


def _run_collab_locked(config, data, out, folds, columns, progress):
    start = time.perf_counter()
    ratings = load_ratings(data, *columns)
    # Scale the default y_range to the whole data's rating range, not each training split's (a top rating that
    # falls only in the validation split would otherwise be out of reach); a given y_range is checked here too.
    y_range = resolve_y_range(config, ratings.rating_range)
    config = config.replace(y_range=tuple(y_range) if y_range else ())
    result, metrics = fit_and_score(ratings, config, folds, progress=progress)
    fitted = result.fitted
    counts = fitted.item_counts()[1:]
    most_rated = int(counts.argmax()) + 1
    # On small data few items reach the default count; the report lists the best-rated ones it has instead.
    min_count = min(MIN_COUNT, int(np.sort(counts)[-min(11, len(counts))]))
    similar = (fitted.title(most_rated), similar_items(fitted, most_rated, n=10, min_count=max(min_count, 1))
               if len(counts) > 1 else [], similarity_measure(fitted))
    metrics.update({"config": config.to_dict(), "data": ratings.source, "n_ratings": len(ratings.frame),
                    "split": f"{folds}-fold" if folds > 1 else config.split, "kind": config.kind})
    with atomic.atomic_dir(out, replace=True) as tmp:  # check_collab_out said an old one is ours
        save_model(fitted, tmp / "model.pth")
        plot_pca(*pca_items(fitted, n=50), tmp / PCA_FILE)
        atomic.write_csv(tmp / CROSSTAB_FILE, crosstab(ratings, 15), index=True)
        metrics["seconds_total"] = round(time.perf_counter() - start, 2)
        atomic.write_json(tmp / METRICS_FILE, metrics)
    return CollabReport(metrics, item_biases(fitted, 5), similar, Path(out), result.history)
