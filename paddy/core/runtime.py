"""Where the kit runs: Kaggle or not, which device, one way to seed everything, threads, bars and memory."""

import contextlib
import gc
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from fastprogress import fastprogress

from paddy.core.config import check_device
from paddy.core.errors import ConfigError


def is_kaggle() -> bool:
    """True inside a Kaggle kernel (Kaggle sets KAGGLE_KERNEL_RUN_TYPE there)."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))


def resolve_device(device: str = "auto") -> str:
    """Turn "auto" into "cuda" when a GPU is usable, else "cpu"; other names pass through checked."""
    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def release_memory() -> None:
    """Collect garbage (fastai learners hold reference cycles) and hand cached CUDA blocks back to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op torch threads, then restore the caller's setting.

    Small models on 2-core machines lose badly to intra-op threading when the other core is busy (DESIGN.md).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Run the block with fastprogress's per-batch bars on or off; the epoch table prints either way.

    fastprogress decides with `getattr(stdout, "isatty", False)`, the method itself (always true) rather than its
    result, so outside a terminal every bar update goes into the log: a Kaggle kernel's log or `paddy train > log`
    gets thousands of lines. Its `NO_BAR` setting turns the bars off and keeps fastai's epoch table.
    """
    before = fastprogress.NO_BAR
    fastprogress.NO_BAR = not enabled
    try:
        yield
    finally:
        fastprogress.NO_BAR = before
