"""A competition folder: find it, read its CSVs, list its images, split them."""

import hashlib
from pathlib import Path

import pandas as pd
import torch

from paddy.core import runtime
from paddy.core.errors import DataError
from paddy.core.tables import read_csv
from paddy.data import competition

KAGGLE_DATA = Path(competition.KAGGLE_INPUT) / competition.COMPETITION
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_data(path: str | Path | None = None) -> Path:
    """The competition folder: `path` when given, else the Kaggle input folder inside a kernel."""
    if path is None:
        if not runtime.is_kaggle():
            raise DataError("no data folder given: pass DATA (a competition folder, e.g. one made by paddy sample)")
        path = KAGGLE_DATA
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder: pass a competition folder (train.csv, train_images/, test_images/)")
    return path


def read_train_csv(data: str | Path, targets: tuple = ("label",)) -> pd.DataFrame:
    """train.csv as a DataFrame (image_id as text); variety must be complete only when it is a target."""
    path = Path(data) / competition.TRAIN_CSV
    frame = read_csv(path, f"is {data} a competition folder? (paddy check {data})",
                     dtype={"image_id": str, "label": str, "variety": str})
    needed = ["image_id", *targets]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; expected {','.join(competition.TRAIN_COLUMNS)}")
    require_targets(frame, targets, where=str(path))
    return frame


def require_targets(frame: pd.DataFrame, targets: tuple, where: str = "train.csv") -> None:
    """Raise DataError when a target column is missing or has empty values."""
    for target in targets:
        if target not in frame.columns:
            raise DataError(f"{where} has no {target!r} column, needed for the {target} target")
        empty = frame[target].isna() | (frame[target].astype(str).str.strip() == "")
        if empty.any():
            first = frame.loc[empty, "image_id"].iloc[0]
            raise DataError(f"{where}: {int(empty.sum())} image(s) have no {target} (first {first}); "
                            f"fix the CSV or drop {target} from --targets")


def train_items(data: str | Path) -> pd.DataFrame:
    """One row per training image on disk: image_id, label (its folder), variety, age, path; sorted by id."""
    folder = Path(data) / competition.TRAIN_IMAGES
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: is {data} a competition folder? (paddy check {data})")
    files = [p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES]
    items = pd.DataFrame({"image_id": [p.name for p in files], "label": [p.parent.name for p in files],
                          "path": [str(p) for p in files]})
    if items.empty:
        raise DataError(f"{folder} holds no images; run paddy check {data}")
    frame = read_train_csv(data, targets=())
    extra = [c for c in ("variety", "age") if c in frame.columns]
    items = items.merge(frame[["image_id", *extra]], on="image_id", how="left")
    for column in ("variety", "age"):
        if column not in items.columns:
            items[column] = None
    items = items.sort_values("image_id", kind="stable").reset_index(drop=True)
    return items[["image_id", "label", "variety", "age", "path"]]


def count_images(data: str | Path) -> int:
    """How many image files the folder's train_images/<label>/ and test_images/ hold (no decoding: for messages)."""
    root = Path(data)
    found = [*(root / competition.TRAIN_IMAGES).glob("*/*"), *(root / competition.TEST_IMAGES).glob("*")]
    return sum(p.suffix.lower() in IMAGE_SUFFIXES for p in found)


def seeded_rank(seed: int, image_id: str) -> bytes:
    """A sort key for `image_id` that depends only on it and `seed` (seeded splits independent of row order)."""
    return hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()


def valid_mask(image_ids: list, valid_pct: float, seed: int) -> list[bool]:
    """Boolean list: True for validation images; depends only on the set of ids and the seed, not on order."""
    ids = [str(i) for i in image_ids]
    n_valid = int(round(len(ids) * valid_pct))
    # Rank ids by a seeded hash: the chosen set is the same whatever order the rows come in.
    ranked = sorted(set(ids), key=lambda i: seeded_rank(seed, i))
    chosen = set(ranked[:n_valid])
    return [i in chosen for i in ids]


def random_valid_mask(n_items: int, valid_pct: float, seed: int) -> list[bool]:
    """Boolean list: True for the items fastai's RandomSplitter(valid_pct, seed) puts in validation, in item order."""
    # RandomSplitter seeds torch's global generator and takes the first int(valid_pct * n) of a permutation; a
    # private generator with that seed draws the same permutation and leaves the global one alone.
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))
    mask = [False] * n_items
    for index in order[:int(valid_pct * n_items)].tolist():
        mask[index] = True
    return mask


def split_mask(image_ids: list, valid_pct: float, seed: int, split: str = "hash") -> list[bool]:
    """The validation mask of `split`: "hash" (`valid_mask`, order-free) or "random" (RandomSplitter, by order)."""
    if split == "random":
        return random_valid_mask(len(image_ids), valid_pct, seed)
    return valid_mask(image_ids, valid_pct, seed)


def smallest_class_items(items: pd.DataFrame) -> pd.DataFrame:
    """The rows of the least frequent label (ties: the first name), what the memory probe trains on."""
    counts = items["label"].value_counts()
    smallest = sorted(counts.index[counts == counts.min()])[0]
    return items[items["label"] == smallest].reset_index(drop=True)


def test_items(data: str | Path) -> pd.DataFrame:
    """One row per test image, sorted by id: image_id, path."""
    folder = Path(data) / competition.TEST_IMAGES
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: is {data} a competition folder? (paddy check {data})")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
    return pd.DataFrame({"image_id": [p.name for p in files], "path": [str(p) for p in files]})


def target_vocabs(items: pd.DataFrame, targets: tuple) -> dict:
    """{target: sorted classes} over all items, so train and valid (and every member) share one vocab."""
    return {t: tuple(sorted(items[t].astype(str).unique())) for t in targets}
