"""The submissions log (submissions/log.csv by default): one row per written or sent submission.

LOG_COLUMNS come first, in that order, and any extra keys a caller passes become extra columns after them.
"""

import datetime
from pathlib import Path

import pandas as pd

from paddy.core import atomic
from paddy.core.tables import read_csv

DEFAULT_LOG = Path("submissions") / "log.csv"
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


def read_log(log_path: str | Path) -> pd.DataFrame:
    """The submissions log as a DataFrame (LOG_COLUMNS first; empty when the file does not exist yet)."""
    path = Path(log_path)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
    frame = read_csv(path, what="submissions log", dtype=object, keep_default_na=False)
    return _with_log_columns(frame)


def write_log(log_path: str | Path, frame: pd.DataFrame) -> Path:
    """Write the whole log atomically, LOG_COLUMNS first."""
    return atomic.write_csv(log_path, _with_log_columns(frame))


def append_log(log_path: str | Path, row: dict) -> Path:
    """Append one row (a dict; time defaults to now, UTC) by rewriting the log atomically."""
    row = {"time": utc_now(), **row}
    frame = read_log(log_path)
    new = pd.DataFrame([{k: _log_value(v) for k, v in row.items()}], dtype=object)
    frame = pd.concat([frame.astype(object), new], ignore_index=True) if len(frame) else new
    return write_log(log_path, frame)


def same_file(a: object, b: object) -> bool:
    """True when two logged file names point at the same file (relative names resolve against the current folder)."""
    return Path(str(a)).resolve() == Path(str(b)).resolve()


def written_fields(frame: pd.DataFrame, path: str | Path) -> dict:
    """The ensemble columns of the log's latest `written` row for the CSV `path`; {} when there is none."""
    written = frame[frame["event"].eq("written") & frame["file"].map(lambda f: same_file(f, path))]
    return {} if written.empty else {c: written.iloc[-1][c] for c in ENSEMBLE_LOG_COLUMNS}


def utc_now() -> str:
    """The current time, UTC, to the second, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _log_value(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else value


def _with_log_columns(frame):
    frame = frame.copy()
    for column in LOG_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for column in NUMERIC_LOG_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")  # "" (not yet known) becomes NaN
    extras = [c for c in frame.columns if c not in LOG_COLUMNS]
    return frame[list(LOG_COLUMNS) + extras]
