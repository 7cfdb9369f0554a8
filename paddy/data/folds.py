"""K-fold cross-validation folds: stratified by label (variety kept close), seeded, saved once per runs folder.

A runs folder holds one fold assignment that every member of a plan shares:
  folds.csv   image_id, fold (0..K-1), sorted by image_id
  folds.json  k, seed, n_images, the digest of the training rows it came from and of folds.csv; written last,
              so folds.csv counts only once folds.json describes it
The assignment depends only on the set of (image_id, label, variety) rows, K and the seed, never on row order.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paddy.core import atomic
from paddy.core.errors import ConfigError, DataError
from paddy.core.tables import read_csv
from paddy.data.folder import seeded_rank

FOLDS_CSV = "folds.csv"
FOLDS_JSON = "folds.json"
STRATA = ("label", "variety")  # label first: it is what folds must keep balanced; variety where it exists


@dataclass(frozen=True)
class Folds:
    """A fold per training image, with what made it: K, the seed and the digest of the training rows."""

    image_ids: tuple
    folds: np.ndarray  # int, one per image id, 0..k-1
    k: int
    seed: int
    train_digest: str

    @property
    def digest(self) -> str:
        """A digest of the assignment itself: members trained on the same folds share it."""
        return _digest(f"{i},{f}" for i, f in sorted(zip(self.image_ids, self.folds.tolist())))

    def fold_of(self) -> dict:
        """{image_id: fold}."""
        return dict(zip(self.image_ids, self.folds.tolist()))


def check_k(k: int, label_counts: dict) -> int:
    """K as an int when 2 <= K <= the smallest class count (every fold then holds every class); else ConfigError."""
    if not isinstance(k, int) or isinstance(k, bool):
        raise ConfigError(f"folds must be a whole number, got {k!r}")
    smallest = min(label_counts.values()) if label_counts else 0
    if k < 2:
        raise ConfigError(f"folds must be at least 2, got {k}; leave folds out to train one split")
    if k > smallest:
        name = min(label_counts, key=lambda c: (label_counts[c], c))
        raise ConfigError(f"folds={k} is more than the {smallest} images of the smallest class ({name}); "
                          f"use at most {smallest} folds")
    return k


def check_fold(fold: int, k: int) -> int:
    """`fold` as an int in 0..k-1; else ConfigError."""
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < k:
        raise ConfigError(f"fold must be 0..{k - 1} for {k} folds, got {fold!r}")
    return fold


def train_digest(items: pd.DataFrame) -> str:
    """A digest of the training rows (image_id, label, variety), whatever their order or the CSV's formatting."""
    columns = [c for c in STRATA if c in items.columns]
    rows = items[["image_id", *columns]].astype(str).itertuples(index=False, name=None)
    return _digest(",".join(row) for row in sorted(rows))


def assign_folds(items: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """A fold (0..k-1) per row of `items`: stratified by label, varieties spread within each label, seeded."""
    ids = items["image_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise DataError("training items list some image_id more than once; fix train.csv")
    check_k(k, items["label"].astype(str).value_counts().to_dict())
    variety = items["variety"].astype(str).tolist() if "variety" in items.columns else [""] * len(ids)
    labels = items["label"].astype(str).tolist()
    # Deal rows round-robin in (label, variety, seeded hash) order: each label, and each variety inside it,
    # splits over the folds within one image; the counter runs on across labels so fold sizes stay within one.
    order = sorted(range(len(ids)), key=lambda r: (labels[r], variety[r], seeded_rank(seed, ids[r])))
    start = int(np.random.default_rng(seed).integers(k))  # which fold takes the first remainder is seeded too
    folds = np.empty(len(ids), dtype=np.int64)
    for position, row in enumerate(order):
        folds[row] = (start + position) % k
    return folds


def build_folds(items: pd.DataFrame, k: int, seed: int) -> Folds:
    """The Folds of `items` (image_id, label and, where present, variety)."""
    folds = assign_folds(items, k, seed)
    ids = items["image_id"].astype(str).tolist()
    order = np.argsort(ids, kind="stable")
    return Folds(image_ids=tuple(ids[i] for i in order), folds=folds[order], k=k, seed=seed,
                 train_digest=train_digest(items))


def write_folds(runs: str | Path, folds: Folds) -> Path:
    """Write folds.csv, then folds.json (which marks it complete), atomically; return folds.csv's path."""
    runs = Path(runs)
    frame = pd.DataFrame({"image_id": list(folds.image_ids), "fold": folds.folds})
    path = atomic.write_csv(runs / FOLDS_CSV, frame)
    meta = {"k": folds.k, "seed": folds.seed, "n_images": len(folds.image_ids),
            "train_digest": folds.train_digest, "folds_digest": folds.digest}
    atomic.write_json(runs / FOLDS_JSON, meta)
    return path


def read_folds(runs: str | Path) -> Folds | None:
    """The runs folder's Folds, or None when it has none yet; DataError when they are damaged."""
    runs = Path(runs)
    meta_path = runs / FOLDS_JSON
    if not meta_path.is_file():
        return None  # a folds.csv without folds.json is an interrupted write: made again, the same
    try:
        meta = json.loads(meta_path.read_text())
        k, seed, digest, expected = int(meta["k"]), int(meta["seed"]), meta["train_digest"], meta["folds_digest"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{meta_path} is damaged; delete {meta_path} and {runs / FOLDS_CSV} and train again") from None
    frame = read_csv(runs / FOLDS_CSV, f"delete {meta_path} and train again", dtype={"image_id": str})
    if list(frame.columns) != ["image_id", "fold"]:
        raise DataError(f"{runs / FOLDS_CSV} must have the columns image_id,fold; delete it and {meta_path}")
    folds = Folds(image_ids=tuple(frame["image_id"]), folds=frame["fold"].to_numpy(dtype=np.int64), k=k,
                  seed=seed, train_digest=digest)
    if folds.digest != expected:
        raise DataError(f"{runs / FOLDS_CSV} was changed after it was written; restore it, or delete it and "
                        f"{meta_path} and train every fold again")
    return folds


def ensure_folds(runs: str | Path, items: pd.DataFrame, k: int, seed: int) -> Folds:
    """The runs folder's folds, made and saved on first use; refused when they came from other data, K or seed."""
    existing = read_folds(runs)
    if existing is None:
        folds = build_folds(items, k, seed)
        write_folds(runs, folds)
        return folds
    where = Path(runs) / FOLDS_CSV
    if existing.train_digest != train_digest(items):
        raise DataError(f"{where} was made from another train.csv; use a new runs folder for this data")
    if existing.k != k or existing.seed != seed:
        raise ConfigError(f"{where} has {existing.k} folds with seed {existing.seed}, not {k} with seed {seed}; "
                          "use the same folds and split_seed, or a new runs folder")
    return existing


def _digest(lines):
    sha = hashlib.sha256()
    for line in lines:
        sha.update(line.encode() + b"\n")
    return sha.hexdigest()[:16]


@dataclass(frozen=True)
class FoldSplit:
    """One fold as a training split: its held-out image ids, and what a fold run records about it."""

    fold: int
    k: int
    valid_ids: frozenset
    digest: str  # Folds.digest: the assignment this fold belongs to
    n_train: int

    def result_keys(self) -> dict:
        """What a fold run adds to its result.json (paddy/core/oof.py reads it back)."""
        return {"fold": self.fold, "folds": self.k, "folds_digest": self.digest, "n_train": self.n_train}


def fold_split(folds: Folds, fold: int) -> FoldSplit:
    """FoldSplit of fold `fold` (0..k-1) of `folds`."""
    check_fold(fold, folds.k)
    valid = frozenset(i for i, f in zip(folds.image_ids, folds.folds.tolist()) if f == fold)
    return FoldSplit(fold=fold, k=folds.k, valid_ids=valid, digest=folds.digest, n_train=len(folds.image_ids))
