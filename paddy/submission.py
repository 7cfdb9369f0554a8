"""Submissions: built from sample_submission.csv by image_id (never by position), checked, and logged.

The log (submissions/log.csv by default) has one row per written or sent submission; LOG_COLUMNS come first,
in that order, and any extra keys a caller passes become extra columns after them.
"""

import datetime
from pathlib import Path

from paddy import atomic, competition
from paddy.data import read_csv
from paddy.errors import DataError

ID_COLUMN = "image_id"
LOG_COLUMNS = (
    "time",  # UTC, ISO 8601, when the row was appended
    "event",  # "written" (paddy ensemble) or "submitted" (paddy submit)
    "file",  # the submission CSV
    "competition",  # the Kaggle competition slug
    "members",  # each member run: name and its config's key fields
    "weights",  # the ensemble weights, comma-separated, in member order
    "valid_accuracy",  # the ensemble's accuracy on the images every member held out
    "best_member_accuracy",  # the best single member's accuracy on those same images
    "n_valid",  # how many images that was
    "message",  # the user's note (-m)
    "public_score",  # empty until `paddy submissions` fills it from Kaggle
)
NUMERIC_LOG_COLUMNS = ("valid_accuracy", "best_member_accuracy", "public_score")
ENSEMBLE_LOG_COLUMNS = ("members", "weights", "valid_accuracy", "best_member_accuracy", "n_valid")


def read_sample_submission(data):
    """Read DATA/sample_submission.csv with image ids as text; DataError when missing or malformed."""
    path = Path(data) / competition.SAMPLE_SUBMISSION_CSV
    sample = read_csv(path, f"is {data} a competition folder? (paddy check {data})", dtype=str, keep_default_na=False)
    if ID_COLUMN not in sample.columns or len(sample.columns) < 2:
        raise DataError(f"{path} needs an image_id column and a label column, has {list(sample.columns)}")
    if sample[ID_COLUMN].duplicated().any():
        raise DataError(f"{path} lists some image_id more than once; fix or re-download it")
    return sample


def label_column(sample):
    """The column a submission fills: the first one after image_id ("label" in Paddy Doctor)."""
    return next(c for c in sample.columns if c != ID_COLUMN)


def competition_sample():
    """The real competition's sample_submission.csv, built from its facts (ids 200001.jpg..203469.jpg)."""
    import pandas as pd

    ids = [f"{competition.FIRST_TEST_ID + i}.jpg" for i in range(competition.N_TEST)]
    return pd.DataFrame({ID_COLUMN: ids, "label": [""] * len(ids)})


def data_vocab(data):
    """The labels of a competition folder: the names of its train_images/ subfolders, sorted."""
    folder = Path(data) / competition.TRAIN_IMAGES
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not labels:
        raise DataError(f"{folder} has no label folders: is {data} a competition folder? (paddy check {data})")
    return tuple(labels)


def build_submission(sample, image_ids, labels):
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


def check_submission(frame, sample, vocab):
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


def write_submission(path, frame):
    """Write a checked submission CSV atomically (no index column)."""
    return atomic.write_csv(path, frame)


def check_submission_file(path, data=None, vocab=None):
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


def read_log(log_path):
    """The submissions log as a DataFrame (LOG_COLUMNS first; empty when the file does not exist yet)."""
    import pandas as pd

    path = Path(log_path)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable submissions log ({error}); move it aside") from None
    return _with_log_columns(frame)


def write_log(log_path, frame):
    """Write the whole log atomically, LOG_COLUMNS first."""
    return atomic.write_csv(log_path, _with_log_columns(frame))


def append_log(log_path, row):
    """Append one row (a dict; time defaults to now, UTC) by rewriting the log atomically."""
    import pandas as pd

    row = {"time": utc_now(), **row}
    frame = read_log(log_path)
    new = pd.DataFrame([{k: _log_value(v) for k, v in row.items()}], dtype=object)
    frame = pd.concat([frame.astype(object), new], ignore_index=True) if len(frame) else new
    return write_log(log_path, frame)


def same_file(a, b):
    """True when two logged file names point at the same file (relative names resolve against the current folder)."""
    return Path(str(a)).resolve() == Path(str(b)).resolve()


def written_fields(frame, path):
    """The ensemble columns of the log's latest `written` row for the CSV `path`; {} when there is none."""
    written = frame[frame["event"].eq("written") & frame["file"].map(lambda f: same_file(f, path))]
    return {} if written.empty else {c: written.iloc[-1][c] for c in ENSEMBLE_LOG_COLUMNS}


def utc_now():
    """The current time, UTC, to the second, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _log_value(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else value


def _with_log_columns(frame):
    import pandas as pd

    frame = frame.copy()
    for column in LOG_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for column in NUMERIC_LOG_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")  # "" (not yet known) becomes NaN
    extras = [c for c in frame.columns if c not in LOG_COLUMNS]
    return frame[list(LOG_COLUMNS) + extras]
