"""The probe's search: accum 1, 2, 4, ... until a try's peak fits the budget; what a try and a report hold.

On CUDA a try records `torch.cuda.max_memory_allocated`, `max_memory_reserved` and the process total that
`torch.cuda.list_gpu_processes` reports, with torch's cache counted at its peak; the budget applies to the process
total (what a card must hold), or to the reserved peak when the total is unknown. Without CUDA the same flow
measures the peak resident memory (RSS) of the training process, and the budget applies to that. Sizes are MiB.
"""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from paddy.core.config import TrainConfig, check_power_of_two
from paddy.core.errors import ConfigError, PaddyError


@dataclass(frozen=True)
class TryResult:
    """One probe try: a model at one accum, its peaks (MB, NaN when unknown), whether it fits, and its time."""

    arch: str
    size: str
    accum: int
    micro_bs: int
    peak_allocated_mb: float = math.nan
    peak_reserved_mb: float = math.nan
    process_total_mb: float = math.nan
    device: str = ""
    fits: bool = False
    seconds: float = 0.0
    images_per_s: float = math.nan
    oom: bool = False
    error: str = ""
    estimated_alloc_mb: float = math.nan  # paddy.probe.estimate's figures, without a GPU
    estimated_total_mb: float = math.nan

    @property
    def budget_mb(self):
        """The figure the budget applies to: process total, else reserved peak, else allocated peak, else the
        estimated process total."""
        for value in (self.process_total_mb, self.peak_reserved_mb, self.peak_allocated_mb, self.estimated_total_mb):
            if not math.isnan(value):
                return value
        return math.nan

    def judged(self, budget_gb):
        """A copy whose `fits` says whether this try finished without OOM within `budget_gb`."""
        fits = not self.oom and not self.error and self.budget_mb <= budget_gb * 1024
        return dataclasses.replace(self, fits=bool(fits))

    def to_dict(self):
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ProbeReport:
    """Every try in order, the accum chosen per member run name (None: nothing fit), budget and device."""

    results: tuple
    chosen: dict
    budget_gb: float
    device: str


class ProbeTimeout(PaddyError):
    """A subprocess probe ran past its time limit; `.results` holds the tries it finished."""

    def __init__(self, message, results=()):
        super().__init__(message)
        self.results = list(results)


def accum_candidates(bs: int, max_accum: int = 16) -> list[int]:
    """1, 2, 4, ... up to max_accum and never beyond bs."""
    check_power_of_two(max_accum, "max accum")
    candidates, accum = [], 1
    while accum <= min(max_accum, bs):
        candidates.append(accum)
        accum *= 2
    return candidates


def check_budget(budget_gb: object) -> None:
    """Raise ConfigError unless the budget is a positive number of GB."""
    if isinstance(budget_gb, bool) or not isinstance(budget_gb, (int, float)) or not budget_gb > 0:
        raise ConfigError(f"budget must be a positive number of GB, got {budget_gb!r}")


def probe_config(config: TrainConfig, accum: int = 1) -> TrainConfig:
    """What a try trains: one epoch, random weights, all layers (no fine-tuning), at `accum`."""
    return config.replace(accum=accum, epochs=1, finetune=False, pretrained=False)


def search_accum(measure: Callable[[TrainConfig], "TryResult"], config: TrainConfig, budget_gb: float,
                 max_accum: int = 16) -> list:
    """Try accum 1, 2, 4, ... with `measure(config) -> TryResult` until one fits; return every try, judged."""
    check_budget(budget_gb)
    results = []
    for accum in accum_candidates(config.bs, max_accum):
        result = measure(probe_config(config, accum)).judged(budget_gb)
        results.append(result)
        if result.fits:
            break
    return results


def chosen_accum(results: list) -> int | None:
    """The accum of the first try that fits, or None."""
    return next((r.accum for r in results if r.fits), None)
