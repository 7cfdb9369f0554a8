"""The run-folder contract: what `train` writes and `ensemble` reads, in one place.

A run folder holds:
  config.json              the resolved TrainConfig plus library versions
  metrics.csv              one row per epoch (losses, error rates, seconds)
  metrics.png              loss and metric curves
  model.pkl                the exported fastai Learner (`learn.export`)
  vocab.json               {target: [class, ...]} for every predicted target
  valid_probs_<target>.csv image_id, target (the true class), one column per class in vocab order
  test_probs_<target>.csv  image_id, one column per class in vocab order (test-time augmented)
  checkpoints/             per-epoch checkpoints while training (an interrupted run resumes)
  result.json              written last: the run is complete when it exists
A fold of a K-fold member is such a run folder too (its validation set is the fold; result.json adds fold, folds,
folds_digest, n_train); the member folder above its folds is described in paddy/core/oof.py.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paddy.core import atomic
from paddy.core.errors import DataError
from paddy.core.tables import read_csv

CONFIG = "config.json"
METRICS = "metrics.csv"
PLOT = "metrics.png"
MODEL = "model.pkl"
VOCAB = "vocab.json"
RESULT = "result.json"
CHECKPOINTS = "checkpoints"
TRUE_COLUMN = "target"
FOLD_COLUMN = "fold"  # out-of-fold probabilities (paddy/core/oof.py) say which fold held each image out
ROW_SUM_TOLERANCE = 1e-3  # softmax rows, written as text, sum to 1 far closer than this


def valid_probs_path(run, target="label"):
    """Where a run keeps its validation probabilities for `target`."""
    return Path(run) / f"valid_probs_{target}.csv"


def test_probs_path(run, target="label"):
    """Where a run keeps its test-time-augmented test probabilities for `target`."""
    return Path(run) / f"test_probs_{target}.csv"


def is_complete(run):
    """True when the run finished (result.json is written last)."""
    return (Path(run) / RESULT).is_file()


@dataclass(frozen=True)
class Probs:
    """Class probabilities with their image ids, the vocab (column order) and, for validation, true classes."""

    image_ids: tuple
    probs: np.ndarray
    vocab: tuple
    true: tuple = None
    folds: tuple = None  # out-of-fold rows only: the fold that held each image out


def write_probs(path, image_ids, probs, vocab, true=None):
    """Write probabilities as CSV: image_id, [target], one column per class."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(image_ids), len(vocab)):
        raise ValueError(f"probs shape {probs.shape} does not match {len(image_ids)} ids x {len(vocab)} classes")
    frame = pd.DataFrame(probs, columns=list(vocab))
    if true is not None:
        frame.insert(0, TRUE_COLUMN, list(true))
    frame.insert(0, "image_id", list(image_ids))
    return atomic.write_csv(path, frame)


def read_probs(path, vocab=None):
    """Read a probabilities CSV, checking it is complete, numeric, finite, non-negative, that each row sums to 1,
    and that it matches `vocab` if given; a DataError names the file and the first bad row."""
    path = Path(path)
    frame = read_csv(path, f"is {path.parent} a finished run folder? (re-run paddy train)",
                     dtype={"image_id": str, TRUE_COLUMN: str})
    if "image_id" not in frame.columns:
        raise DataError(f"{path} has no image_id column; it is not a probabilities file")
    classes = tuple(c for c in frame.columns if c not in ("image_id", TRUE_COLUMN, FOLD_COLUMN))
    if not classes:
        raise DataError(f"{path} has no class columns; the run is damaged, re-run it")
    if vocab is not None and tuple(vocab) != classes:
        raise DataError(f"{path} classes {list(classes)} differ from vocab {list(vocab)}")
    values = frame[list(classes)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    _check_rows(path, frame, classes, values)
    if frame["image_id"].isna().any() or frame["image_id"].duplicated().any():
        raise DataError(f"{path} has an empty image_id or lists one more than once; the run is damaged, re-run it")
    true = tuple(frame[TRUE_COLUMN]) if TRUE_COLUMN in frame.columns else None
    folds = _folds(frame[FOLD_COLUMN], path) if FOLD_COLUMN in frame.columns else None
    return Probs(image_ids=tuple(frame["image_id"]), probs=values, vocab=classes, true=true, folds=folds)


def _folds(column, path):
    """The fold column as ints >= 0; DataError otherwise."""
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().any() or (values < 0).any() or (values % 1 != 0).any():
        raise DataError(f"{path} has a fold that is not a whole number >= 0; assemble the member again")
    return tuple(int(v) for v in values)


def _check_rows(path, frame, classes, values):
    """DataError naming the first row (1-based, as a spreadsheet shows the data) that is not a distribution."""
    bad_cell = ~np.isfinite(values) | (values < 0)
    bad_sum = np.abs(np.where(bad_cell, 0.0, values).sum(axis=1) - 1.0) > ROW_SUM_TOLERANCE
    for row in np.flatnonzero(bad_cell.any(axis=1) | bad_sum)[:1]:
        where = f"{path} row {row + 1} (image_id {frame['image_id'].iloc[row]})"
        if bad_cell[row].any():
            column = classes[int(bad_cell[row].argmax())]
            cell = frame[column].iloc[row]
            raise DataError(f"{where}: {column} is {cell!r}, not a probability (NaN, infinite, negative or not "
                            "a number); the run is damaged, re-run it")
        raise DataError(f"{where}: probabilities sum to {values[row].sum():.6g}, not 1 (within "
                        f"{ROW_SUM_TOLERANCE:g}); the run is damaged, re-run it")


def read_json(run, name):
    """Read one of a run folder's JSON files (an object); DataError when it is missing, truncated or not JSON."""
    path = Path(run) / name
    if not path.is_file():
        raise DataError(f"{path} is missing: {run} is not a complete run folder")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        reason = getattr(error, "msg", type(error).__name__)
        line = f" at line {error.lineno}" if hasattr(error, "lineno") else ""
        raise DataError(f"{path} is not valid JSON ({reason}{line}): the run folder is damaged; re-run it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds {type(data).__name__}, not a JSON object: the run folder is damaged; re-run it")
    return data


def check_losses(run):
    """DataError when a finished run's losses are NaN or infinite (it trained on nothing or diverged)."""
    last = read_json(run, RESULT).get("last_epoch") or {}
    bad = sorted(k for k, v in last.items() if "loss" in str(k) and not _finite(v))
    if bad:
        raise DataError(f"{Path(run) / RESULT}: {', '.join(bad)} is not a finite number (the run trained on "
                        "nothing or diverged); leave it out, or re-run it with a smaller --bs or --lr")


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def describe_errors(errors):
    """A result's validation error per target as text, e.g. "label 0.2292, variety 0.0833"."""
    return ", ".join(f"{target} {error:.4f}" for target, error in errors.items())


def read_vocab(run):
    """The run's vocab per target, as tuples."""
    return {target: tuple(classes) for target, classes in read_json(run, VOCAB).items()}
