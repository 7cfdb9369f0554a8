"""Rating data for collaborative filtering: loaders (MovieLens 100k, latest-small, any CSV), splits and a crosstab.

Every loader returns a `Ratings`: a frame with string columns `user`, `item` and a float column `rating`, plus
item titles when the source has them. Ids are strings so that a command-line `--user 42` matches without guessing
dtypes.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.data.external import URLs, untar_data

from paddy.core.errors import DataError
from paddy.core.tables import read_csv

EMBEDDED = "ml-latest-small"
ML_100K = "ml-100k"
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5")
COLUMNS = ("user", "item", "rating")


def embedded_path():
    """The MovieLens latest-small copy shipped inside the package (with its licence README)."""
    return Path(__file__).parent / EMBEDDED


@dataclass(frozen=True)
class Ratings:
    """Ratings as a frame (user, item, rating) and item titles by item id; `source` is where they came from."""

    frame: object
    titles: dict = field(default_factory=dict)
    source: str = ""
    folder: Path | None = None  # a MovieLens 100k folder, which may hold the canonical u1..u5 splits

    @property
    def rating_range(self):
        """(lowest, highest) rating in the data."""
        return float(self.frame["rating"].min()), float(self.frame["rating"].max())

    def title(self, item):
        """The title of `item`, or its id when there is none."""
        return self.titles.get(item, str(item))


def _read_csv(path, **kwargs):
    """The kit's CSV reader with every column as text (ids like "007" stay themselves)."""
    return read_csv(path, what="ratings file", dtype=str, **kwargs)


def clean_ratings(frame, user_col, item_col, rating_col, source):
    """Check and normalise a raw ratings frame to columns user, item (str) and rating (float)."""
    missing = [name for name in (user_col, item_col, rating_col) if name not in frame.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; it has {list(frame.columns)}; "
                        "name the right ones with --user-col/--item-col/--rating-col")
    if len(frame) == 0:
        raise DataError(f"{source} has no ratings (a header only); give a file with at least one row")
    ratings = pd.to_numeric(frame[rating_col], errors="coerce")
    bad = ratings.isna() | ~np.isfinite(ratings.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: rating {frame[rating_col].iloc[row]!r} in data row {row + 1} is not a number; "
                        f"column {rating_col!r} must hold numeric ratings only")
    ids = frame[[user_col, item_col]]
    if ids.isna().any().any():
        row = int(np.flatnonzero(ids.isna().any(axis=1).to_numpy())[0])
        raise DataError(f"{source}: data row {row + 1} has no user or item id; remove or fill it")
    return pd.DataFrame({"user": frame[user_col].astype(str).to_numpy(), "item": frame[item_col].astype(str).to_numpy(),
                         "rating": ratings.astype("float32").to_numpy()})


def load_ratings_csv(path, user_col=None, item_col=None, rating_col=None, titles=None):
    """Any ratings CSV; columns by name, or the first three (user, item, rating) as fastai assumes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a ratings CSV, a MovieLens folder or {EMBEDDED!r}")
    frame = _read_csv(path)
    if user_col is None and item_col is None and rating_col is None and len(frame.columns) < 3:
        raise DataError(f"{path} has {len(frame.columns)} column(s); a ratings CSV needs user, item and rating")
    names = list(frame.columns[:3])
    user_col, item_col, rating_col = (given or default for given, default in zip((user_col, item_col, rating_col),
                                                                                 names + [None] * 3, strict=False))
    # A role left to its default may land on a column named for another (--user-col given as the file's second
    # column, which is the item's default): training would then go on with the same ids on both sides.
    roles = {"user": user_col, "item": item_col, "rating": rating_col}
    for first, second in (("user", "item"), ("user", "rating"), ("item", "rating")):
        if roles[first] is not None and roles[first] == roles[second]:
            raise DataError(f"{path}: column {roles[first]!r} is both the {first} and the {second} column; name each "
                            "with --user-col/--item-col/--rating-col")
    return Ratings(clean_ratings(frame, user_col, item_col, rating_col, str(path)), titles or {}, str(path))


def load_ml_latest_small(path=None):
    """MovieLens latest-small (ratings.csv, movies.csv); the embedded copy when `path` is None."""
    folder = Path(path) if path is not None else embedded_path()
    ratings = load_ratings_csv(folder / "ratings.csv", "userId", "movieId", "rating")
    titles = {}
    if (folder / "movies.csv").is_file():
        movies = _read_csv(folder / "movies.csv")
        if {"movieId", "title"} <= set(movies.columns):
            titles = dict(zip(movies["movieId"].astype(str), movies["title"].astype(str), strict=True))
    return Ratings(ratings.frame, titles, EMBEDDED if path is None else str(folder))


def _read_u_data(path):
    """One tab-separated MovieLens 100k ratings file (u.data, u1.base, ...) as a clean frame."""
    names = ["user", "item", "rating", "timestamp"]
    frame = _read_csv(path, sep="\t", header=None, names=names)
    return clean_ratings(frame, "user", "item", "rating", str(path))


def load_ml100k(path=None):
    """MovieLens 100k from its folder (u.data, u.item); fastai's `untar_data(URLs.ML_100k)` when `path` is None."""
    if path is None:
        try:
            path = untar_data(URLs.ML_100k)
        except Exception as error:  # noqa: BLE001 -- any download failure means the same thing to the user
            raise DataError(f"could not download MovieLens 100k ({type(error).__name__}); "
                            "pass the unpacked ml-100k folder as --data PATH") from None
    folder = Path(path)
    if not (folder / "u.data").is_file():
        raise DataError(f"{folder} has no u.data; give the unpacked MovieLens 100k folder")
    titles = {}
    if (folder / "u.item").is_file():
        items = _read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", usecols=(0, 1),
                          names=["item", "title"])
        titles = dict(zip(items["item"].astype(str), items["title"].astype(str), strict=True))
    return Ratings(_read_u_data(folder / "u.data"), titles, str(folder), folder)


def load_ratings(data=EMBEDDED, user_col=None, item_col=None, rating_col=None):
    """Ratings from a name (ml-latest-small, ml-100k), a MovieLens folder, or a ratings CSV file."""
    if data == EMBEDDED:
        return load_ml_latest_small()
    if data == ML_100K:
        return load_ml100k()
    path = Path(data)
    if path.is_dir():
        if (path / "u.data").is_file():
            return load_ml100k(path)
        if (path / "ratings.csv").is_file():
            return load_ml_latest_small(path)
        raise DataError(f"{path} holds neither u.data (MovieLens 100k) nor ratings.csv; give a ratings CSV file")
    return load_ratings_csv(path, user_col, item_col, rating_col)


def random_split(n, valid_pct=0.2, seed=42):
    """Seeded random (train, valid) index arrays over `n` ratings."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - valid_pct)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def kfold_splits(n, folds=5, seed=42):
    """Seeded k-fold (train, valid) index arrays over `n` ratings: every rating is validated exactly once."""
    if folds < 2 or folds > n:
        raise DataError(f"k-fold needs 2 <= folds <= number of ratings ({n}), got {folds}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    return [(np.sort(np.concatenate(parts[:k] + parts[k + 1:])), np.sort(parts[k])) for k in range(folds)]


def split_frames(ratings, split="random", valid_pct=0.2, seed=42):
    """(train, valid) frames: a seeded random split, or MovieLens 100k's canonical u1..u5 base/test files."""
    if split == "random":
        train, valid = random_split(len(ratings.frame), valid_pct, seed)
        return ratings.frame.iloc[train].reset_index(drop=True), ratings.frame.iloc[valid].reset_index(drop=True)
    if split not in ML100K_SPLITS:
        raise DataError(f"unknown split {split!r}; use random or one of {', '.join(ML100K_SPLITS)}")
    folder = ratings.folder
    if folder is None or not (folder / f"{split}.base").is_file() or not (folder / f"{split}.test").is_file():
        raise DataError(f"split {split!r} needs a MovieLens 100k folder with {split}.base and {split}.test; "
                        f"{ratings.source} has none; use --split random")
    return _read_u_data(folder / f"{split}.base"), _read_u_data(folder / f"{split}.test")


def crosstab(ratings, n=15):
    """The top-`n` users by count x top-`n` items by count, ratings where known (NaN elsewhere), titles as columns."""
    frame = ratings.frame
    users = frame["user"].value_counts().index[:n]
    items = frame["item"].value_counts().index[:n]
    sub = frame[frame["user"].isin(users) & frame["item"].isin(items)]
    table = sub.pivot_table(index="user", columns="item", values="rating", aggfunc="mean")
    table = table.reindex(index=list(users), columns=list(items))
    table.columns = [ratings.title(item) for item in table.columns]
    return table
