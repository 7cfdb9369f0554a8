"""A run's training history: metrics.csv (one row per epoch) and its plot."""

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from paddy.core import atomic, run_folder
from paddy.core.tables import read_csv


def write_metrics(run: str | Path, rows: list) -> None:
    """metrics.csv: one row per epoch."""
    atomic.write_csv(Path(run) / run_folder.METRICS, pd.DataFrame(rows))


def read_metrics(run: str | Path) -> list:
    """metrics.csv rows as dicts (empty when absent)."""
    path = Path(run) / run_folder.METRICS
    return read_csv(path).to_dict("records") if path.is_file() else []


def plot_metrics(rows: list, path: str | Path) -> None:
    """Loss curves (left) and error rates (right) per epoch, as a PNG."""
    fig = Figure(figsize=(10, 4))  # the object API: no pyplot state, no backend to choose
    left, right = fig.subplots(1, 2)
    epochs = [r["epoch"] + 1 for r in rows]
    for key in rows[0]:
        if key in ("epoch", "phase", "phase_epoch", "seconds"):
            continue
        axis = left if "loss" in key else right
        axis.plot(epochs, [r[key] for r in rows], marker="o", label=key)
    for axis, title in ((left, "loss"), (right, "error rate")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
