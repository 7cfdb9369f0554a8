"""The calibration of the memory estimate: what a trace cannot see, fitted on rows measured on a GPU.

A trace counts every tensor; a GPU process also holds the CUDA context, cuBLAS/cuDNN workspaces and the caching
allocator's cached but unused blocks. Two small models, fitted by least squares on measured rows:
process total = intercept + slope * traced allocated, and peak allocated = ratio * traced allocated (MiB).

Rows live in `bench/results/<gpu>/calibration.json` ({"rows": [...]}: each row's measured figures beside the traced
ones for the same schedule); `paddy probe --estimate --check` appends to it on a GPU.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from paddy.core import atomic
from paddy.core.errors import ConfigError

CALIBRATION_ROOT = Path(__file__).resolve().parents[2] / "bench" / "results"
CALIBRATION_NAME = "calibration.json"
ROW_KEYS = ("arch", "size", "accum", "micro_bs", "traced_alloc_mb", "peak_allocated_mb", "process_total_mb")


@dataclass(frozen=True)
class Calibration:
    """total = total_intercept_mb + total_slope * traced; allocated = alloc_ratio * traced (MiB); from `rows` rows
    measured on `gpu`."""

    total_intercept_mb: float
    total_slope: float
    alloc_ratio: float
    gpu: str
    rows: int

    def total_mb(self, traced_alloc_mb):
        """Estimated process total (what the card must hold) for a traced allocated peak."""
        return self.total_intercept_mb + self.total_slope * traced_alloc_mb

    def allocated_mb(self, traced_alloc_mb):
        """Estimated torch.cuda.max_memory_allocated for a traced allocated peak."""
        return self.alloc_ratio * traced_alloc_mb


# The fit of bench/results/h200/calibration.json as committed, for an installed paddy without the bench folder
# (tests/test_probe_calibrate.py checks it still equals the file's fit).
H200_FALLBACK = Calibration(total_intercept_mb=1663.38, total_slope=1.00661, alloc_ratio=1.01931, gpu="h200", rows=9)


def fit(rows, gpu=""):
    """Least-squares calibration on measured rows (at least two distinct traced figures); ConfigError otherwise."""
    xs = [float(r["traced_alloc_mb"]) for r in rows]
    totals = [float(r["process_total_mb"]) for r in rows]
    allocs = [float(r["peak_allocated_mb"]) for r in rows]
    if len(set(xs)) < 2:
        raise ConfigError(f"calibration needs two or more measured rows with different traces, got {len(rows)}")
    mean_x, mean_t = sum(xs) / len(xs), sum(totals) / len(totals)
    slope = (sum((x - mean_x) * (t - mean_t) for x, t in zip(xs, totals)) /
             sum((x - mean_x) ** 2 for x in xs))
    ratio = sum(x * a for x, a in zip(xs, allocs)) / sum(x * x for x in xs)
    return Calibration(total_intercept_mb=mean_t - slope * mean_x, total_slope=slope, alloc_ratio=ratio, gpu=gpu,
                       rows=len(rows))


def leave_one_out(rows):
    """For each row, (row, estimated allocated MB, estimated total MB) from a fit on the other rows only."""
    out = []
    for index, row in enumerate(rows):
        calibration = fit(rows[:index] + rows[index + 1:])
        traced = float(row["traced_alloc_mb"])
        out.append((row, calibration.allocated_mb(traced), calibration.total_mb(traced)))
    return out


def calibration_path(gpu, root=None):
    """Where `gpu`'s calibration rows live."""
    return Path(root or CALIBRATION_ROOT) / gpu / CALIBRATION_NAME


def read_rows(path):
    """The measured rows of a calibration file ([] when it does not exist); ConfigError when a row lacks a figure."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())["rows"]
    for row in rows:
        missing = [k for k in ROW_KEYS if k not in row or _missing(row[k])]
        if missing:
            raise ConfigError(f"{path}: a row of {row.get('arch', '?')} lacks {', '.join(missing)}; fix or remove it")
    return rows


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def append_rows(path, rows):
    """Add measured rows to a calibration file (created when missing), atomically; return its path."""
    return atomic.write_json(path, {"rows": read_rows(path) + list(rows)})


def load_calibration(gpu="h200", root=None):
    """The calibration fitted on `gpu`'s rows; h200's when that GPU has none; the committed h200 fit when the bench
    folder is absent (an installed paddy)."""
    for name in dict.fromkeys((gpu, "h200")):
        rows = read_rows(calibration_path(name, root))
        if len(rows) >= 2:
            return fit(rows, gpu=name)
    return H200_FALLBACK
