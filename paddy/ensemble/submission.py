"""Submissions: built from sample_submission.csv by image_id (never by position), checked, written atomically."""

from pathlib import Path

import pandas as pd

from paddy.core import atomic
from paddy.core.errors import DataError
from paddy.core.tables import read_csv
from paddy.data import array_cache, competition

ID_COLUMN = "image_id"


def read_sample_submission(data: str | Path) -> pd.DataFrame:
    """Read DATA/sample_submission.csv with image ids as text; DataError when missing or malformed."""
    path = Path(data) / competition.SAMPLE_SUBMISSION_CSV
    sample = read_csv(path, f"is {data} a competition folder? (paddy check {data})", dtype=str, keep_default_na=False)
    if ID_COLUMN not in sample.columns or len(sample.columns) < 2:
        raise DataError(f"{path} needs an image_id column and a label column, has {list(sample.columns)}")
    if sample[ID_COLUMN].duplicated().any():
        raise DataError(f"{path} lists some image_id more than once; fix or re-download it")
    return sample


def label_column(sample: pd.DataFrame) -> str:
    """The column a submission fills: the first one after image_id ("label" in Paddy Doctor)."""
    return next(c for c in sample.columns if c != ID_COLUMN)


def competition_sample() -> pd.DataFrame:
    """The real competition's sample_submission.csv, built from its facts (ids 200001.jpg..203469.jpg)."""
    ids = [f"{competition.FIRST_TEST_ID + i}.jpg" for i in range(competition.N_TEST)]
    return pd.DataFrame({ID_COLUMN: ids, "label": [""] * len(ids)})


def data_vocab(data: str | Path) -> tuple:
    """The labels of a competition folder (the names of its train_images/ subfolders) or array cache, sorted."""
    folder = Path(data) / competition.TRAIN_IMAGES
    if array_cache.is_array_cache(data):
        return tuple(sorted(set(array_cache.cache_items(data, "train")["label"])))
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not labels:
        raise DataError(f"{folder} has no label folders: is {data} a competition folder? (paddy check {data})")
    return tuple(labels)


def build_submission(sample: pd.DataFrame, image_ids: list, labels: list) -> pd.DataFrame:
    """The sample's columns and row order, each row's label looked up by its image_id."""
    image_ids, labels = [str(i) for i in image_ids], list(labels)
    if len(image_ids) != len(labels):
        raise DataError(f"got {len(labels)} labels for {len(image_ids)} image ids")
    if len(set(image_ids)) != len(image_ids):
        raise DataError("predictions list some image_id more than once")
    _require_same_ids(image_ids, sample[ID_COLUMN], "the predictions")
    by_id = dict(zip(image_ids, labels))
    frame = sample.copy()
    frame[label_column(sample)] = [by_id[i] for i in sample[ID_COLUMN]]
    return frame


def check_submission(frame: pd.DataFrame, sample: pd.DataFrame, vocab: tuple) -> None:
    """Raise DataError unless `frame` has the sample's columns, each of its ids once, and only labels in `vocab`."""
    if list(frame.columns) != list(sample.columns):
        raise DataError(f"submission columns {list(frame.columns)} differ from sample_submission.csv's "
                        f"{list(sample.columns)}")
    ids = frame[ID_COLUMN].astype(str)
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise DataError(f"submission lists {len(repeated)} image_id(s) more than once, e.g. {repeated[0]}")
    _require_same_ids(ids, sample[ID_COLUMN], "the submission")
    labels, allowed = frame[label_column(sample)], set(vocab)
    bad = sorted({str(v) for v in labels if not isinstance(v, str) or v not in allowed})
    if bad:
        raise DataError(f"submission has {len(bad)} label(s) outside the vocab, e.g. {bad[0]!r}; "
                        f"allowed: {', '.join(vocab)}")
    return frame


def write_submission(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write a checked submission CSV atomically (no index column)."""
    return atomic.write_csv(path, frame)


def check_submission_file(path: str | Path, data: str | Path | None = None,
                          vocab: tuple | None = None) -> pd.DataFrame:
    """Check a submission CSV against DATA's sample_submission.csv (default: the real competition's ids and labels)."""
    path = Path(path)
    frame = read_csv(path, "write it first with paddy ensemble", dtype=str, keep_default_na=False)
    sample = competition_sample() if data is None else read_sample_submission(data)
    vocab = tuple(competition.LABEL_COUNTS) if vocab is None else tuple(vocab)
    try:
        return check_submission(frame, sample, vocab)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def _require_same_ids(ids, sample_ids, what):
    ids, sample_ids = set(map(str, ids)), set(map(str, sample_ids))
    missing, extra = sorted(sample_ids - ids), sorted(ids - sample_ids)
    if missing or extra:
        example = f"missing e.g. {missing[0]}" if missing else f"extra e.g. {extra[0]}"
        raise DataError(f"{what} and sample_submission.csv disagree on image ids ({len(missing)} missing, "
                        f"{len(extra)} extra; {example}): were the runs trained on this competition folder?")
