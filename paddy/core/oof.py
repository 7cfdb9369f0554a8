"""K-fold members: K ordinary fold run folders assembled into one member folder that `paddy ensemble` reads.

A K-fold member folder (runs/<member>/) holds:
  fold-0/ .. fold-<K-1>/   ordinary run folders (the run-folder contract); fold i's validation set is fold i
  config.json              the member's config (its folds' config, without the fold index)
  vocab.json               {target: [class, ...]}
  oof_probs_<target>.csv   image_id, fold, target (the true class), one column per class: every training image
                           exactly once, predicted by the fold model that never trained on it
  test_probs_<target>.csv  the K fold models' (test-time-augmented) test probabilities, averaged
  result.json              written last: the member is complete (and readable as a run) when it exists
The fold assignment itself (folds.csv) lives one level up, in the runs folder every member shares.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from paddy.core import atomic, run_folder
from paddy.core.errors import DataError

FOLD_PREFIX = "fold-"
FOLD_KEYS = ("fold", "folds", "folds_digest", "n_train")  # what a fold run adds to its result.json
# Config keys that may differ between a member's folds: where and how each ran, not what it learned.
MACHINE_KEYS = ("fold", "device", "num_workers", "data", "versions", "accum")


def fold_dir(member: str | Path, fold: int) -> Path:
    """Where fold `fold` of a member trains."""
    return Path(member) / f"{FOLD_PREFIX}{fold}"


def oof_probs_path(run: str | Path, target: str = "label") -> Path:
    """Where a K-fold member keeps its out-of-fold probabilities for `target`."""
    return Path(run) / f"oof_probs_{target}.csv"


def is_oof_member(run: str | Path) -> bool:
    """True when `run` is a complete K-fold member (it has out-of-fold probabilities and result.json)."""
    return run_folder.is_complete(run) and oof_probs_path(run).is_file()


def fold_result(run: Path) -> dict:
    """A complete fold run's result.json; DataError when the run is unfinished or is not a fold run."""
    if not run_folder.is_complete(run):
        raise DataError(f"{run} has no {run_folder.RESULT}: the fold is unfinished; finish it (paddy train --fold)")
    result = run_folder.read_json(run, run_folder.RESULT)
    missing = [k for k in FOLD_KEYS if k not in result]
    if missing:
        raise DataError(f"{run} is not a fold run (its result.json lacks {', '.join(missing)}); train it with --folds")
    return result


def check_fold_results(fold_dirs: list, results: list) -> None:
    """DataError unless the results are folds 0..K-1 of one assignment, each once."""
    k, digest = results[0]["folds"], results[0]["folds_digest"]
    if sorted(r["fold"] for r in results) != list(range(k)) or len(results) != k:
        found = ", ".join(str(r["fold"]) for r in results)
        raise DataError(f"need folds 0..{k - 1} once each, got {found}; train the missing folds (paddy train --fold)")
    for run, result in zip(fold_dirs, results):
        if result["folds"] != k or result["folds_digest"] != digest:
            raise DataError(f"{run} was trained on other folds than {fold_dirs[0]}; train them from one folds.csv")


def member_config(fold_dirs: list) -> dict:
    """The config the folds share (their config.json without the fold index); DataError when they differ."""
    configs = [run_folder.read_json(run, run_folder.CONFIG) for run in fold_dirs]
    shared = {k: v for k, v in configs[0].items() if k not in MACHINE_KEYS}
    for run, config in zip(fold_dirs[1:], configs[1:]):
        keys = (set(shared) | set(config)) - set(MACHINE_KEYS)
        changed = sorted(k for k in keys if config.get(k) != shared.get(k))
        if changed:
            raise DataError(f"{run} and {fold_dirs[0]} were trained with different configs ({', '.join(changed)})")
    return shared


def gather_oof(fold_dirs: list, results: list, target: str, vocab: tuple) -> run_folder.Probs:
    """Every fold's held-out probabilities for `target`, one row per training image, with its fold."""
    parts = [run_folder.read_probs(run_folder.valid_probs_path(run, target), vocab=vocab) for run in fold_dirs]
    ids = [i for p in parts for i in p.image_ids]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"image {repeated} is held out by more than one fold; the folds do not partition the data")
    n_train = results[0]["n_train"]
    if len(ids) != n_train:
        raise DataError(f"the folds hold out {len(ids)} images, not the {n_train} training images; train them again")
    folds = tuple(r["fold"] for p, r in zip(parts, results) for _ in p.image_ids)
    true = tuple(t for p in parts for t in p.true)
    return run_folder.Probs(image_ids=tuple(ids), probs=np.concatenate([p.probs for p in parts]), vocab=vocab,
                            true=true, folds=folds)


def mean_test(fold_dirs: list, target: str, vocab: tuple) -> tuple:
    """The folds' test probabilities for `target`, averaged by image id (in the first fold's order)."""
    parts = [run_folder.read_probs(run_folder.test_probs_path(run, target), vocab=vocab) for run in fold_dirs]
    ids = parts[0].image_ids
    total = np.zeros_like(parts[0].probs)
    for run, part in zip(fold_dirs, parts):
        index = {image_id: row for row, image_id in enumerate(part.image_ids)}
        if set(index) != set(ids):
            raise DataError(f"{run} and {fold_dirs[0]} predicted different test images; train them on one folder")
        total += part.probs[[index[i] for i in ids]]
    return ids, total / len(parts)


def assemble_member(fold_dirs: list, out: str | Path) -> dict:
    """Write the member files of complete fold runs into `out` (result.json last); return the member result."""
    fold_dirs = [Path(d) for d in fold_dirs]
    if not fold_dirs:
        raise DataError("no fold runs to assemble; train the folds first")
    results = [fold_result(run) for run in fold_dirs]
    check_fold_results(fold_dirs, results)
    order = np.argsort([r["fold"] for r in results])
    fold_dirs, results = [fold_dirs[i] for i in order], [results[i] for i in order]
    config, vocabs = member_config(fold_dirs), run_folder.read_vocab(fold_dirs[0])
    if any(run_folder.read_vocab(run) != vocabs for run in fold_dirs[1:]):
        raise DataError(f"the folds of {out} disagree on the class vocab; train them on one competition folder")
    oofs = {t: gather_oof(fold_dirs, results, t, v) for t, v in vocabs.items()}  # everything read before writing
    tests = {t: mean_test(fold_dirs, t, v) for t, v in vocabs.items()}
    out = Path(out)
    atomic.write_json(out / run_folder.VOCAB, {t: list(v) for t, v in vocabs.items()})
    atomic.write_json(out / run_folder.CONFIG, config)
    for target, oof in oofs.items():
        write_oof(oof_probs_path(out, target), oof)
        run_folder.write_probs(run_folder.test_probs_path(out, target), *tests[target], vocabs[target])
    result = member_result(config, results, oofs, len(tests["label"][0]))
    atomic.write_json(out / run_folder.RESULT, result)  # last: the member is complete
    return result


def member_result(config: dict, results: list, oofs: dict, n_test: int) -> dict:
    """The member's result.json: its folds, per-fold and out-of-fold errors."""
    oof_error = {t: round(float(np.mean(np.asarray(o.vocab)[o.probs.argmax(axis=1)] != np.asarray(o.true))), 4)
                 for t, o in oofs.items()}
    return {"run": config.get("run_name", ""), "arch": config.get("arch", ""), "folds": results[0]["folds"],
            "folds_digest": results[0]["folds_digest"], "epochs": results[0].get("epochs"),
            "tta": results[0].get("tta"), "fold_valid_error_tta": [r.get("valid_error_tta") for r in results],
            "oof_error_tta": oof_error, "valid_error_tta": oof_error, "n_oof": results[0]["n_train"],
            "n_test": n_test, "seconds": round(sum(r.get("seconds", 0) for r in results), 1)}


def write_oof(path: str | Path, oof: run_folder.Probs) -> Path:
    """Write out-of-fold probabilities: image_id, fold, target, one column per class."""
    frame = pd.DataFrame(oof.probs, columns=list(oof.vocab))
    frame.insert(0, run_folder.TRUE_COLUMN, list(oof.true))
    frame.insert(0, run_folder.FOLD_COLUMN, list(oof.folds))
    frame.insert(0, "image_id", list(oof.image_ids))
    return atomic.write_csv(path, frame)


def read_oof(run: str | Path, target: str = "label", vocab: tuple | None = None) -> run_folder.Probs:
    """A K-fold member's out-of-fold probabilities (with true classes and folds); DataError when incomplete."""
    path = oof_probs_path(run, target)
    oof = run_folder.read_probs(path, vocab=vocab)
    if oof.true is None or oof.folds is None:
        raise DataError(f"{path} needs '{run_folder.TRUE_COLUMN}' and '{run_folder.FOLD_COLUMN}' columns; "
                        "assemble the member again (paddy train --folds)")
    return oof
