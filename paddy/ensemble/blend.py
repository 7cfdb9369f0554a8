"""The ensembler: average the runs' saved (test-time-augmented) probabilities by image id, write a checked, logged CSV.

Pure functions on arrays first (weighted_mean, align, argmax_labels, accuracy, ensemble_accuracy), then
`ensemble_runs`, which reads run folders (paddy/core/run_folder.py), builds everything, and only then writes.
An ensemble never retrains. Validation accuracy of the ensemble is measured only on images that every member
held out: a member that trained on an image cannot vote on it fairly. K-fold members (paddy/core/oof.py) held out
every training image once: they are scored on all of them, and their weights can be fitted there
(paddy/ensemble/fit.py), with the fitted blend scored nested.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddy.core import atomic, lock, oof, run_folder
from paddy.core.config import parse_weights
from paddy.core.errors import ConfigError, DataError
from paddy.data import competition
from paddy.data.folder import find_data, read_train_csv
from paddy.data.marker import folder_competition
from paddy.ensemble import fit as ensemble_fit
from paddy.ensemble import log as submissions_log
from paddy.ensemble import submission

TARGET = "label"  # every run, single- or multi-target, saves this head in the same form
CONFIG_KEYS = ("arch", "size", "item_size", "item_method", "epochs", "lr", "finetune", "pretrained", "bs", "accum",
               "targets", "tta", "seed", "valid_seed")


def weighted_mean(prob_list: list, weights: tuple | None = None) -> np.ndarray:
    """The weighted mean of equally shaped probability arrays (weights are normalised; equal by default)."""
    arrays = [np.asarray(p, dtype=np.float64) for p in prob_list]
    if not arrays:
        raise DataError("nothing to average: give at least one run")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise DataError(f"probability arrays differ in shape: {[a.shape for a in arrays]}")
    if not all(np.isfinite(a).all() and (a >= 0).all() for a in arrays):
        raise DataError("probabilities must be finite and >= 0; a run is corrupt, re-run it")
    w = np.asarray(parse_weights(weights, len(arrays), what="weight", per="run"))
    return np.tensordot(w / w.sum(), np.stack(arrays), axes=1)


def align(probs: run_folder.Probs, ids: tuple) -> run_folder.Probs:
    """A run_folder.Probs with its rows (and true classes) reordered to `ids`; DataError if any id is missing."""
    index = {image_id: row for row, image_id in enumerate(probs.image_ids)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise DataError(f"{len(missing)} image id(s) have no probabilities, e.g. {missing[0]}")
    rows = np.array([index[i] for i in ids], dtype=np.int64)
    true = None if probs.true is None else tuple(probs.true[r] for r in rows)
    folds = None if probs.folds is None else tuple(probs.folds[r] for r in rows)
    return run_folder.Probs(image_ids=tuple(ids), probs=probs.probs[rows], vocab=probs.vocab, true=true, folds=folds)


def reorder_classes(probs: run_folder.Probs, vocab: tuple) -> run_folder.Probs:
    """A Probs whose columns follow `vocab` (same classes, any order); DataError if the classes differ."""
    if tuple(probs.vocab) == tuple(vocab):
        return probs
    if set(probs.vocab) != set(vocab) or len(probs.vocab) != len(vocab):
        raise DataError(f"runs disagree on the label vocab: {list(probs.vocab)} vs {list(vocab)}; "
                        "ensemble only runs trained on the same classes")
    columns = [list(probs.vocab).index(c) for c in vocab]
    return run_folder.Probs(image_ids=probs.image_ids, probs=probs.probs[:, columns], vocab=tuple(vocab),
                            true=probs.true, folds=probs.folds)


def argmax_labels(probs: np.ndarray, vocab: tuple) -> list:
    """The vocab class of each row's largest probability (ties go to the earlier class)."""
    return [vocab[i] for i in np.asarray(probs).argmax(axis=1)]


def accuracy(probs: np.ndarray, true: tuple, vocab: tuple) -> float:
    """Fraction of rows whose argmax class equals the true class (nan for no rows)."""
    if len(true) == 0:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(argmax_labels(probs, vocab), true)]))


@dataclass(frozen=True)
class ValidScores:
    """Accuracies on the images every member held out: the ensemble's and each member's."""

    n_common: int
    ensemble: float
    members: tuple


def common_ids(valid_list: list) -> tuple:
    """Image ids held out by every member, in the first member's order."""
    shared = set(valid_list[0].image_ids).intersection(*(v.image_ids for v in valid_list[1:]))
    return tuple(i for i in valid_list[0].image_ids if i in shared)


def ensemble_accuracy(valid_list: list, weights: tuple | None = None) -> "ValidScores":
    """Score the weighted ensemble and each member on the images all members held out."""
    ids = common_ids(valid_list)
    aligned = [align(v, ids) for v in valid_list]
    true = aligned[0].true
    if any(a.true != true for a in aligned[1:]):
        raise DataError("runs disagree on the true label of some validation image; were they trained on the same data?")
    vocab = aligned[0].vocab
    mean = weighted_mean([a.probs for a in aligned], weights)
    members = tuple(accuracy(a.probs, true, vocab) for a in aligned)
    return ValidScores(n_common=len(ids), ensemble=accuracy(mean, true, vocab), members=members)


@dataclass(frozen=True)
class Member:
    """One run as the ensemble sees it: its folder, label-head probabilities, and config's key fields.

    A K-fold member's `valid` holds its out-of-fold probabilities: every training image, with its fold.
    """

    run: Path
    name: str
    test: run_folder.Probs
    valid: run_folder.Probs
    config: dict
    has_oof: bool = False  # a K-fold member: `valid` holds out-of-fold predictions of every training image


def read_member(run: str | Path, vocab: tuple | None = None) -> Member:
    """Read one run folder's label probabilities (test and validation) and key config fields."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run} is not a folder; give run folders written by paddy train")
    if not run_folder.is_complete(run):
        raise DataError(f"{run} has no {run_folder.RESULT}: the run is unfinished; finish it (paddy train) "
                        "or leave it out")
    run_folder.check_losses(run)  # a run that trained on nothing has NaN losses and uniform-ish probabilities
    test = run_folder.read_probs(run_folder.test_probs_path(run, TARGET))
    has_oof = oof.is_oof_member(run)
    if has_oof:  # a K-fold member: its folds never train on the rows they predict
        valid = oof.read_oof(run, TARGET, vocab=test.vocab)
    else:
        valid = run_folder.read_probs(run_folder.valid_probs_path(run, TARGET), vocab=test.vocab)
    if valid.true is None:
        raise DataError(f"{run_folder.valid_probs_path(run, TARGET)} has no '{run_folder.TRUE_COLUMN}' column")
    if (run / run_folder.VOCAB).is_file() and run_folder.read_vocab(run).get(TARGET) != test.vocab:
        raise DataError(f"{run}: vocab.json disagrees with the columns of its probabilities; the run is corrupt")
    if vocab is not None:
        test, valid = reorder_classes(test, vocab), reorder_classes(valid, vocab)
    config = run_folder.read_json(run, run_folder.CONFIG) if (run / run_folder.CONFIG).is_file() else {}
    trained = run_folder.read_json(run, run_folder.RESULT).get("epochs")  # fine_tune trains 1 frozen + `epochs`
    config = {k: config[k] for k in CONFIG_KEYS if k in config} | ({"epochs": trained} if trained else {})
    return Member(run=run, name=run.name, test=test, valid=valid, config=config, has_oof=has_oof)


def read_members(run_dirs: list) -> list[Member]:
    """Read every run, with columns in the first run's vocab order and the same test ids in all of them."""
    if not run_dirs:
        raise ConfigError("give at least one run folder")
    seen = [Path(r).resolve() for r in run_dirs]
    repeated = sorted({str(r) for r in run_dirs if seen.count(Path(r).resolve()) > 1})
    if repeated:  # a repeat would silently count twice and be listed twice in the log
        raise ConfigError(f"{repeated[0]} is given more than once; give each run once (--weights weighs one more)")
    first = read_member(run_dirs[0])
    members = [first] + [read_member(r, vocab=first.test.vocab) for r in run_dirs[1:]]
    ids = set(first.test.image_ids)
    for member in members[1:]:
        if set(member.test.image_ids) != ids:
            raise DataError(f"{member.run} and {first.run} predicted different test image ids; "
                            "ensemble runs made on the same competition folder")
    return members


def train_ids(data_path: str | Path) -> set | None:
    """The image ids of DATA/train.csv, or None when the folder has no train.csv to check OOF rows against."""
    if not (Path(data_path) / competition.TRAIN_CSV).is_file():
        return None
    return set(read_train_csv(data_path, targets=())["image_id"].astype(str))


def check_oof_ids(member: Member, expected: set) -> None:
    """DataError unless a K-fold member's OOF rows are exactly the training images `expected`."""
    ids = set(member.valid.image_ids)
    missing, unknown = sorted(expected - ids), sorted(ids - expected)
    if missing:
        raise DataError(f"{member.run}: {len(missing)} training image(s) have no out-of-fold row (e.g. {missing[0]}); "
                        "train its missing folds (paddy train --folds K)")
    if unknown:
        raise DataError(f"{member.run}: {len(unknown)} out-of-fold row(s) are not in train.csv (e.g. {unknown[0]}); "
                        "was it trained on this competition folder?")


def oof_arrays(members: list, expected: set | None = None) -> tuple:
    """K-fold members' OOF rows as (member_probs, y, folds); DataError when their rows, truths or folds differ."""
    first = members[0]
    ids = tuple(sorted(first.valid.image_ids))
    for member in members:
        check_oof_ids(member, set(ids) if expected is None else expected)
    aligned = [align(m.valid, ids) for m in members]
    for member, rows in zip(members[1:], aligned[1:]):
        if rows.folds != aligned[0].folds:
            raise DataError(f"{member.run} was trained on other folds than {first.run} (another folds.csv); "
                            "ensemble K-fold members trained in one runs folder")
        if rows.true != aligned[0].true:
            raise DataError(f"{member.run} and {first.run} disagree on the true label of some training image; "
                            "were they trained on the same data?")
    index = {c: i for i, c in enumerate(first.valid.vocab)}
    unknown = sorted(set(aligned[0].true) - set(index))
    if unknown:
        raise DataError(f"{first.run}: true class {unknown[0]!r} is not in its vocab; the member is corrupt")
    y = np.array([index[t] for t in aligned[0].true], dtype=np.int64)
    return np.stack([a.probs for a in aligned]), y, np.asarray(aligned[0].folds)


def cv_report(members: list, data_path: str | Path, fit: str = "equal", metric: str = "logloss",
              given: tuple | None = None) -> ensemble_fit.CVReport | None:
    """The cross-validation report of K-fold members (weights fitted on OOF rows), or None without OOF rows."""
    if not all(m.has_oof for m in members):
        lacking = next(m for m in members if not m.has_oof)
        if fit != "equal":
            raise ConfigError(f"--fit {fit} needs K-fold members (paddy train --folds K); {lacking.run} has no "
                              "out-of-fold probabilities")
        return None
    member_probs, y, folds = oof_arrays(members, train_ids(data_path))
    return ensemble_fit.cross_validate(member_probs, y, folds, fit, metric, given=given)


def variety_accuracy(members: list) -> dict:
    """{member name: OOF accuracy of its variety head} for K-fold members with one (reported, never submitted)."""
    found = {}
    for member in members:
        if member.has_oof and oof.oof_probs_path(member.run, "variety").is_file():
            rows = oof.read_oof(member.run, "variety")
            found[member.name] = accuracy(rows.probs, rows.true, rows.vocab)
    return found


def resolve_fit(fit: str | None, weights: object, metric: str) -> str:
    """The fitting method ("equal" by default); ConfigError for unknown ones or --weights with a fit."""
    fit = "equal" if fit is None else fit
    ensemble_fit.check_method(fit, metric)
    if weights and fit != "equal":
        raise ConfigError(f"--weights sets the weights by hand and --fit {fit} fits them; give one of the two")
    return fit


@dataclass(frozen=True)
class EnsembleResult:
    """What `ensemble_runs` wrote and measured."""

    out: Path
    log: Path
    members: tuple
    weights: tuple
    member_accuracy: tuple  # each member on its own validation set
    member_n_valid: tuple
    scores: ValidScores  # ensemble and members on the images all members held out
    label_counts: dict
    cv: ensemble_fit.CVReport | None = None  # K-fold members only: OOF scores, nested CV, fitted weights
    variety: dict = None  # K-fold members with a variety head: its OOF accuracy
    competition: str = ""  # the Kaggle slug, from --competition or the data folder's marker; "" when unknown

    @property
    def best_member(self):
        """Index of the member with the best accuracy on the shared held-out images."""
        return int(np.nanargmax(self.scores.members)) if self.scores.n_common else None


def ensemble_runs(run_dirs: list, data: str | Path | None, out: str | Path, weights: object = None, message: str = "",
                  log: str | Path | None = None, overwrite: bool = False, fit: str | None = None,
                  metric: str = "logloss", competition_slug: str | None = None) -> EnsembleResult:
    """Ensemble run folders into a checked submission CSV at `out` and append a log row (shown by
    format_ensemble_table). K-fold members are also cross-validated on their OOF rows; `fit` ("caruana", "hill")
    fits their weights there."""
    out = resolve_out(out, overwrite)
    fit = resolve_fit(fit, weights, metric)
    with lock.hold(out, "submission"):  # two ensembles into one CSV would interleave their log rows
        atomic.remove_stale_temps(out)  # what a killed ensemble into the same CSV left behind
        resolve_out(out, overwrite)  # again, under the lock: another run may have written it meanwhile
        return _ensemble_locked(run_dirs, data, out, weights, message, log, fit, metric, competition_slug)


def _ensemble_locked(run_dirs: list, data: str | Path | None, out: Path, weights: object, message: str,
                     log: str | Path | None, fit: str | None, metric: str,
                     competition_slug: str | None) -> EnsembleResult:
    members = read_members([Path(r) for r in run_dirs])
    given = parse_weights(weights, len(members), what="weight", per="run") if weights else None
    data = find_data(data)  # data None: the Kaggle input folder in a kernel
    cv = cv_report(members, data, fit, metric, given)
    weights = tuple(float(w) for w in cv.weights) if cv else given or (1.0,) * len(members)
    vocab = members[0].test.vocab
    sample = submission.read_sample_submission(data)
    ids = members[0].test.image_ids
    mean = weighted_mean([align(m.test, ids).probs for m in members], weights)
    frame = submission.build_submission(sample, ids, argmax_labels(mean, vocab))
    submission.check_submission(frame, sample, vocab)
    scores = ensemble_accuracy([m.valid for m in members], weights)
    log = Path(log) if log else out.parent / "log.csv"
    submissions_log.read_log(log)  # an unreadable log fails now, before the CSV is written
    result = EnsembleResult(
        out=out, log=log, members=tuple(members), weights=weights,
        member_accuracy=tuple(accuracy(m.valid.probs, m.valid.true, vocab) for m in members),
        member_n_valid=tuple(len(m.valid.image_ids) for m in members), scores=scores,
        label_counts=frame[submission.label_column(sample)].value_counts().to_dict(), cv=cv,
        variety=variety_accuracy(members),
        competition=folder_competition(data) if competition_slug is None else competition_slug)
    # The log is shared by every ensemble written beside it: one appends at a time (a rewrite would lose a row).
    with lock.hold(result.log, "submissions log"), atomic.atomic_path(out) as tmp:
        atomic.remove_stale_temps(result.log)
        submission.write_submission(tmp, frame)  # the CSV appears only once its log row is in: never unlogged
        submissions_log.append_log(result.log, log_row(result, message))
    return result


def resolve_out(out: str | Path, overwrite: bool = False) -> Path:
    """The CSV path: OUT itself, or a time-stamped name inside OUT when it is a folder; never a silent overwrite."""
    folder = str(out).endswith(("/", "\\"))  # Path() drops the trailing slash that says "a folder, to be made"
    out = Path(out)
    if out.is_dir() or folder:
        out = out / f"ensemble-{submissions_log.utc_now().replace(':', '').replace('+0000', '')}.csv"
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out must be a .csv file or a folder, got {out}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists and is in the submissions log; choose a new name (or --overwrite)")
    return out


def member_summary(member: Member) -> str:
    """One member for the log: its name and its config's key fields."""
    fields = " ".join(f"{k}={_compact(v)}" for k, v in member.config.items())  # tta "4,0.25" has a comma
    return f"{member.name}({fields})" if fields else member.name


def log_row(result: EnsembleResult, message: str = "") -> dict:
    """The log row for an ensemble that was written."""
    best = result.best_member
    row = {
        "event": "written", "file": str(result.out), "competition": result.competition,
        "members": "; ".join(member_summary(m) for m in result.members),
        "weights": ",".join(f"{w:.4g}" for w in result.weights),
        "valid_accuracy": _round(result.scores.ensemble),
        "best_member_accuracy": None if best is None else _round(result.scores.members[best]),
        "n_valid": result.scores.n_common, "message": message, "public_score": None,
    }
    cv = result.cv
    if cv is None:
        return row
    # K-fold members: the honest figure is nested (weights never scored on the rows they were fitted on).
    return {**row, "valid_accuracy": _round(cv.nested.mean_accuracy), "cv_accuracy": _round(cv.nested.mean_accuracy),
            "cv_std": _round(cv.nested.std_accuracy), "fit": f"{cv.method}/{cv.metric}",
            "best_member_accuracy": _round(cv.member_accuracy[cv.best_member])}


def format_ensemble_table(result: "EnsembleResult") -> str:
    """A plain-text table: each member's validation accuracy, alone and on the shared held-out images.

    K-fold members get the cross-validation table instead: OOF scores, equal weights, the nested fitted blend.
    """
    if result.cv is not None:
        variety = [f"{name} {_pct(value)}" for name, value in (result.variety or {}).items()]
        extra = ["variety head, OOF accuracy (reported, not submitted): " + ", ".join(variety)] if variety else []
        return "\n".join([ensemble_fit.format_cv(result.cv, [m.name for m in result.members]), *extra])
    scores = result.scores
    rows = [("member", "arch", "tta", "weight", "own valid n", "own acc", f"acc on shared {scores.n_common}")]
    for i, member in enumerate(result.members):
        rows.append((member.name, str(member.config.get("arch", "?")), str(member.config.get("tta", "?")),
                     f"{result.weights[i]:g}", str(result.member_n_valid[i]), _pct(result.member_accuracy[i]),
                     _pct(scores.members[i])))
    rows.append(("ENSEMBLE", "", "", "", "", "", _pct(scores.ensemble)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [verdict(result)])


def verdict(result: EnsembleResult) -> str:
    """One line: does the ensemble beat its best member on the shared held-out images?"""
    scores, best = result.scores, result.best_member
    if best is None:
        return "no image was held out by every member: the ensemble cannot be scored (share split_seed to score it)"
    gain = scores.ensemble - scores.members[best]
    name, where = result.members[best].name, f"on {scores.n_common} images every member held out"
    if gain == 0:
        return f"ensemble ties its best member ({name}) at {_pct(scores.ensemble)} {where}"
    word = "beats" if gain > 0 else "trails"
    return f"ensemble {word} its best member ({name}) by {abs(gain) * 100:.2f} points {where}"


def _pct(value):
    return "n/a" if value is None or math.isnan(value) else f"{value * 100:.2f}%"


def _round(value):
    return None if value is None or math.isnan(value) else round(value, 6)


def _compact(value):
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else "+".join(map(str, value))
    return str(value)
