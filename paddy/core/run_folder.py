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
    """Read a probabilities CSV, checking it is complete, finite, non-negative and matches `vocab` if given."""
    path = Path(path)
    frame = read_csv(path, f"is {path.parent} a finished run folder? (re-run paddy train)",
                     dtype={"image_id": str, TRUE_COLUMN: str})
    if "image_id" not in frame.columns:
        raise DataError(f"{path} has no image_id column; it is not a probabilities file")
    classes = tuple(c for c in frame.columns if c not in ("image_id", TRUE_COLUMN, FOLD_COLUMN))
    if vocab is not None and tuple(vocab) != classes:
        raise DataError(f"{path} classes {list(classes)} differ from vocab {list(vocab)}")
    values = frame[list(classes)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        raise DataError(f"{path} has NaN, infinite or negative probabilities; the run is corrupt, re-run it")
    if frame["image_id"].duplicated().any():
        raise DataError(f"{path} lists some image_id more than once")
    true = tuple(frame[TRUE_COLUMN]) if TRUE_COLUMN in frame.columns else None
    folds = _folds(frame[FOLD_COLUMN], path) if FOLD_COLUMN in frame.columns else None
    return Probs(image_ids=tuple(frame["image_id"]), probs=values, vocab=classes, true=true, folds=folds)


def _folds(column, path):
    """The fold column as ints >= 0; DataError otherwise."""
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().any() or (values < 0).any() or (values % 1 != 0).any():
        raise DataError(f"{path} has a fold that is not a whole number >= 0; assemble the member again")
    return tuple(int(v) for v in values)


def read_json(run, name):
    """Read one of a run folder's JSON files."""
    path = Path(run) / name
    if not path.is_file():
        raise DataError(f"{path} is missing: {run} is not a complete run folder")
    return json.loads(path.read_text())


def describe_errors(errors):
    """A result's validation error per target as text, e.g. "label 0.2292, variety 0.0833"."""
    return ", ".join(f"{target} {error:.4f}" for target, error in errors.items())


def read_vocab(run):
    """The run's vocab per target, as tuples."""
    return {target: tuple(classes) for target, classes in read_json(run, VOCAB).items()}
