"""One probe try: build the kit's learner, train one epoch on the smallest class, read the peaks.

A try runs in this process (`measure_try`) or in a fresh one (`search_in_subprocess`), so nothing leaks between
models: the child is `python -m paddy.probe.worker REQUEST.json`, which writes its results as JSON after each try.
"""

import dataclasses
import functools
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from fastai.callback.core import Callback

from paddy.core import atomic
from paddy.core.config import TrainConfig
from paddy.core.errors import PaddyError
from paddy.core.runtime import release_memory
from paddy.data import source
from paddy.data.folder import smallest_class_items
from paddy.data.loaders import image_dataloaders
from paddy.probe.meter import PeakMeter, is_out_of_memory
from paddy.probe.search import ProbeTimeout, TryResult
from paddy.vision.learner import build_learner


@dataclass(frozen=True)
class TryRequest:
    """What a worker process measures: `configs` tried in order on `data`'s smallest class, on `device`.

    `max_images` caps the images a try trains on; `min_images` repeats them up to a count (more batches, for a
    steadier images/s); `budget_gb` stops at the first try that fits.
    """

    data: str
    device: str
    configs: tuple
    max_images: int | None = None
    min_images: int | None = None
    budget_gb: float | None = None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (configs as dicts)."""
        return {**dataclasses.asdict(self), "configs": [c.to_dict() for c in self.configs]}

    @classmethod
    def from_dict(cls, data: dict) -> "TryRequest":
        """The request a parent process wrote."""
        return cls(**{**data, "configs": tuple(TrainConfig.from_dict(c) for c in data["configs"])})


def probe_items(items: pd.DataFrame, config: TrainConfig, max_images: int | None = None,
                min_images: int | None = None) -> pd.DataFrame:
    """The smallest class, capped at max_images, repeated up to min_images and at least one full training batch."""
    smallest = smallest_class_items(items)
    if max_images:
        smallest = smallest.head(max_images)
    # fastai drops the last incomplete training batch: keep at least one full batch of bs (and a few to validate).
    needed = max(math.ceil(config.bs / (1 - config.valid_pct)) + 2, min_images or 0)
    if len(smallest) >= needed:
        return smallest.reset_index(drop=True)
    repeats = math.ceil(needed / len(smallest))
    copies = [smallest.assign(image_id=smallest["image_id"] + f"~{k}") for k in range(repeats)]
    return pd.concat(copies, ignore_index=True).head(needed)


class Throughput(Callback):
    """Images and seconds of the training batches after the first (CUDA warm-up excluded)."""

    def before_fit(self):
        self.first, self.images, self.seconds = None, 0, 0.0

    def after_batch(self):
        if not self.training:
            return
        if str(self.dls.device).startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            return
        self.images += len(self.xb[0])
        self.seconds = now - self.first


def fit_one_epoch(items: pd.DataFrame, config: TrainConfig, device: str, cbs: tuple = (),
                  data: str | Path | None = None) -> tuple[int, float]:
    """Build the kit's learner for `config` and train one epoch with every layer; return (images, seconds) of the
    training batches after the first (warm-up excluded): (0, 0.0) when there was only one. `data`: where `items`
    come from (an array cache's items are rows of its arrays; None: image files)."""
    if data is None:
        dls = image_dataloaders(items, config, device=device)
    else:
        dls = source.dataloaders(data, items, config, device=device)
    learn = build_learner(dls, config, device)
    learn.unfreeze()
    clock = Throughput()
    for cb in (clock, *cbs):
        learn.add_cb(cb)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, config.lr)
    learn.remove_cbs(list(learn.cbs))  # break the learner's cycles early so its memory goes with it
    return clock.images, clock.seconds


def measure_try(items: pd.DataFrame, config: TrainConfig, device: str,
                fit: Callable[[pd.DataFrame, TrainConfig, str], tuple[int, float]] = fit_one_epoch) -> TryResult:
    """Train one epoch in this process with `fit(items, config, device)`; OOM means it does not fit."""
    meter = PeakMeter(device)
    meter.reset()
    start = time.perf_counter()
    images, fit_seconds, oom_message = 0, math.nan, ""
    try:
        images, fit_seconds = fit(items, config, device)
    except Exception as error:  # noqa: BLE001 - only out-of-memory is swallowed; everything else is re-raised
        if not is_out_of_memory(error):
            raise
        oom_message = str(error).strip().splitlines()[-1][:200] if str(error).strip() else type(error).__name__
    # The exception and its traceback (which holds the learner) are gone here; read the peaks, then free.
    peaks = meter.read()
    release_memory()
    return TryResult(arch=config.arch, size=f"{config.size[0]}x{config.size[1]}", accum=config.accum,
                     micro_bs=config.micro_bs, seconds=round(time.perf_counter() - start, 2),
                     images_per_s=images / fit_seconds if images and fit_seconds > 0 else math.nan,
                     oom=bool(oom_message), error=oom_message, **peaks)


def run_tries(request: TryRequest, result_path: str | Path) -> list[TryResult]:
    """Measure the request's tries in this process, rewriting `result_path` after each (a crash keeps the rest)."""
    items, results = source.train_items(request.data), []
    fit = functools.partial(fit_one_epoch, data=request.data)
    for config in request.configs:
        config = source.resolve_item_size(request.data, config)
        result = measure_try(probe_items(items, config, request.max_images, request.min_images), config,
                             request.device, fit=fit)
        results.append(result.judged(request.budget_gb) if request.budget_gb else result)
        atomic.write_json(result_path, [r.to_dict() for r in results])
        if request.budget_gb and results[-1].fits:
            break
    return results


def search_in_subprocess(request: TryRequest, timeout: float | None = None) -> list[TryResult]:
    """Run the request's tries in one fresh `python -m paddy.probe.worker` process; return their results."""
    with tempfile.TemporaryDirectory(prefix="paddy-probe-") as tmp:
        request_path, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        atomic.write_json(request_path, request.to_dict())
        command = [sys.executable, "-m", "paddy.probe.worker", str(request_path), str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            done = None
        results = [TryResult(**r) for r in json.loads(out.read_text())] if out.is_file() else []
    first = request.configs[0]
    if done is None:
        raise ProbeTimeout(f"probing {first.arch} took over {timeout:.0f} s", results)
    if results:
        return results
    if done.returncode in (-9, 137):  # killed by the kernel's OOM killer: that is "does not fit" too
        return [TryResult(arch=first.arch, size=f"{first.size[0]}x{first.size[1]}", accum=first.accum,
                          micro_bs=first.micro_bs, oom=True, error="killed (out of memory)", device=request.device)]
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise PaddyError(f"probing {first.arch} at accum {first.accum} failed: {last}; rerun with "
                     f"--no-subprocess to see the whole traceback")


def main(argv: list[str]) -> int:
    """`python -m paddy.probe.worker REQUEST.json RESULT.json`: the parent's request in, results out as JSON."""
    if len(argv) != 2:
        print("usage: python -m paddy.probe.worker REQUEST.json RESULT.json (the probe starts it)", file=sys.stderr)
        return 2
    run_tries(TryRequest.from_dict(json.loads(Path(argv[0]).read_text())), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
