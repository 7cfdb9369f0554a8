"""The submissions log (submissions/log.csv by default): one row per written or sent submission.

LOG_COLUMNS come first, in that order, and any extra keys a caller passes become extra columns after them.
"""

import datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

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
    "valid_accuracy",  # the ensemble's accuracy on the images every member held out (K-fold: cv_accuracy)
    "best_member_accuracy",  # the best single member's accuracy on those same images
    "n_valid",  # how many images that was
    "cv_accuracy",  # K-fold members: the blend's nested cross-validation accuracy (mean over folds)
    "cv_std",  # its standard deviation over folds
    "fit",  # how the weights were set: equal, caruana, hill or given, / the metric fitted (logloss, accuracy)
    "message",  # the user's note (-m)
    "public_score",  # empty until `paddy submissions` fills it from Kaggle
)


NUMERIC_LOG_COLUMNS = ("valid_accuracy", "best_member_accuracy", "cv_accuracy", "cv_std", "public_score")


ENSEMBLE_LOG_COLUMNS = ("members", "weights", "valid_accuracy", "best_member_accuracy", "n_valid", "cv_accuracy",
                        "cv_std", "fit")
CV_PLOT = "cv_vs_public.png"  # beside the log: does cross-validation predict the public leaderboard?
MIN_CV_POINTS = 3  # fewer scored submissions say nothing about the relation


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


def cv_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The log's submitted rows with both a CV accuracy and a public score: file, message, cv, std, public."""
    rows = frame[frame["event"].eq("submitted") & frame["cv_accuracy"].notna() & frame["public_score"].notna()]
    return pd.DataFrame({"file": rows["file"].astype(str), "message": rows["message"].astype(str),
                         "cv_accuracy": rows["cv_accuracy"].astype(float),
                         "cv_std": rows["cv_std"].astype(float).fillna(0.0),
                         "public_score": rows["public_score"].astype(float)}).reset_index(drop=True)


def cv_figure(points: pd.DataFrame) -> Figure:
    """Public score against nested CV accuracy (+- its std over folds), with the line public = CV."""
    figure = Figure(figsize=(6, 5))
    axis = figure.subplots()
    axis.errorbar(points["cv_accuracy"], points["public_score"], xerr=points["cv_std"], fmt="o", capsize=3)
    for row in points.itertuples():
        axis.annotate(row.message[:30], (row.cv_accuracy, row.public_score), fontsize=7, xytext=(4, 4),
                      textcoords="offset points")
    low = min(points["cv_accuracy"].min(), points["public_score"].min())
    high = max(points["cv_accuracy"].max(), points["public_score"].max())
    axis.plot([low, high], [low, high], linestyle=":", color="grey", label="public = CV")
    axis.set_xlabel("CV accuracy (nested, mean +- std over folds)")
    axis.set_ylabel("public score")
    axis.set_title(f"{len(points)} scored submissions")
    axis.legend(loc="lower right")
    return figure


def write_cv_plot(log_path: str | Path, frame: pd.DataFrame) -> Path | None:
    """Write CV_PLOT beside the log when MIN_CV_POINTS or more submissions have both scores; its path, else None."""
    points = cv_points(frame)
    if len(points) < MIN_CV_POINTS:
        return None
    path = Path(log_path).parent / CV_PLOT
    with atomic.atomic_path(path) as tmp:
        cv_figure(points).savefig(tmp, dpi=90)
    return path


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
