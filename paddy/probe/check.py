"""`paddy probe --estimate --check`: on a GPU, measure and estimate the same tries, print them side by side, and
append each measurement (with the trace of the epoch it ran) to the calibration rows the estimator reads."""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.data import source
from paddy.data.folder import split_mask, target_vocabs
from paddy.probe.calibrate import append_rows, calibration_path
from paddy.probe.estimate import trace_schedule
from paddy.probe.run import estimate_probe, probe_configs
from paddy.probe.search import ProbeReport, probe_config
from paddy.probe.worker import probe_items

NO_GPU = "--check measures on a GPU and this machine has none (no CUDA device): run --estimate alone"


@dataclass(frozen=True)
class CheckReport:
    """Measured and estimated reports of the same configs, and the calibration file the measurements went to."""

    measured: ProbeReport
    estimated: ProbeReport
    calibration_file: Path


def gpu_key(device_name: str) -> str:
    """A calibration folder name for a CUDA device name: 'NVIDIA H200' -> 'h200', 'Tesla T4' -> 't4'."""
    name = re.sub(r"^(nvidia|tesla)\s+", "", device_name.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"


def require_gpu() -> None:
    """ConfigError in one line when CUDA is not available."""
    if not torch.cuda.is_available():
        raise ConfigError(NO_GPU)


def check_probe(data: str | Path, configs: Sequence[TrainConfig], budget_gb: float, max_accum: int = 16,
                gpu: str | None = None, max_images: int | None = None,
                calibration_root: str | Path | None = None) -> CheckReport:
    """Measure (fresh subprocess per try) and estimate every config; append each measured try to `gpu`'s
    calibration file (default: this device's name) with the trace of the epoch it ran; return both reports."""
    require_gpu()
    gpu = gpu or gpu_key(torch.cuda.get_device_name(0))
    measured = probe_configs(data, configs, budget_gb=budget_gb, max_accum=max_accum, device="cuda",
                             max_images=max_images)
    estimated = estimate_probe(data, configs, budget_gb=budget_gb, max_accum=max_accum, gpu=gpu,
                               calibration_root=calibration_root)
    rows = calibration_rows(data, configs, measured, max_images)
    path = calibration_path(gpu, calibration_root)
    append_rows(path, rows)
    return CheckReport(measured=measured, estimated=estimated, calibration_file=path)


def calibration_rows(data, configs, measured, max_images=None):
    """One calibration row per measured try with figures: its figures beside the trace of the same epoch."""
    items, first = source.train_items(data), {}
    for config in configs:  # measured at the data's item size when the config has none, as the probe does
        first.setdefault((config.arch, f"{config.size[0]}x{config.size[1]}"), source.resolve_item_size(data, config))
    targets = tuple(dict.fromkeys(t for c in configs for t in c.targets))
    vocabs = target_vocabs(items, targets)
    rows = []
    for result in measured.results:
        if math.isnan(result.process_total_mb) or math.isnan(result.peak_allocated_mb):
            continue
        config = probe_config(first[(result.arch, result.size)], result.accum)
        chosen = probe_items(items, config, max_images)
        train = len(chosen) - sum(split_mask(list(chosen["image_id"]), config.valid_pct, config.valid_seed,
                                             config.split))
        traced = trace_schedule(config, vocabs, train // config.micro_bs)
        rows.append({"arch": result.arch, "size": result.size, "item_size": list(config.item_size),
                     "accum": result.accum, "micro_bs": result.micro_bs, "train_images": int(train),
                     "traced_alloc_mb": round(traced.allocated_mb, 1), "traced_reserved_mb": traced.reserved_mb,
                     "traced_storage_mb": round(traced.storage_mb, 1), "peak_allocated_mb": result.peak_allocated_mb,
                     "peak_reserved_mb": result.peak_reserved_mb, "process_total_mb": result.process_total_mb,
                     "source": "paddy probe --estimate --check", "measured_with": f"torch {torch.__version__}, "
                     f"{result.device}"})
    return rows


def format_check(report: CheckReport) -> str:
    """Estimate beside measurement per try (MB), as a markdown table."""
    estimates = {(r.arch, r.size, r.accum): r for r in report.estimated.results}
    lines = ["| arch | size | accum | peak alloc MB | est. alloc MB | error | process total MB | est. total MB "
             "| error |", "|---|---|---|---|---|---|---|---|---|"]
    for m in report.measured.results:
        e = estimates.get((m.arch, m.size, m.accum))
        alloc, total = (e.estimated_alloc_mb, e.estimated_total_mb) if e else (math.nan, math.nan)
        lines.append(f"| {m.arch} | {m.size} | {m.accum} | {_mb(m.peak_allocated_mb)} | {_mb(alloc)} | "
                     f"{_error(alloc, m.peak_allocated_mb)} | {_mb(m.process_total_mb)} | {_mb(total)} | "
                     f"{_error(total, m.process_total_mb)} |")
    return "\n".join(lines)


def _mb(value):
    return "" if math.isnan(value) else f"{value:.0f}"


def _error(estimated, measured):
    return "" if math.isnan(estimated) or math.isnan(measured) else f"{estimated / measured - 1:+.1%}"
