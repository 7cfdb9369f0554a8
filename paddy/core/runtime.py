"""Where the kit runs: Kaggle or not, which device, one way to seed everything, threads, bars and memory."""

import contextlib
import ctypes
import ctypes.util
import gc
import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch
from fastprogress import fastprogress

from paddy.core.accelerators import arch_supports
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


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 0.2


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when `parent_pid` dies, so a killed command leaves no idle workers behind.

    On Linux the kernel sends SIGKILL when the parent goes (prctl PR_SET_PDEATHSIG); elsewhere, and as a backstop,
    a daemon thread polls the parent's PID."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid):
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


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


def gpu_problem(devices: list, arch_list: list, expected: int = 0) -> str | None:
    """Why torch cannot train on `devices` [(name, (major, minor))], or None; `expected` GPUs were asked for."""
    if expected and not devices:
        return (f"asked for {expected} GPU(s) but torch sees none (CUDA not available); check the kernel's "
                "accelerator (machine_shape) or run with --no-gpu")
    for index, (name, capability) in enumerate(devices):
        if not arch_supports(capability, arch_list):
            sm = f"sm_{capability[0]}{capability[1]}"
            return (f"GPU {index} is a {name} ({sm}) but this torch {torch.__version__} build has kernels only for "
                    f"{', '.join(arch_list) or 'no GPU'}; ask for another machine (kernels: --accelerator "
                    f"NvidiaTeslaT4) or install a torch build with {sm}")
    return None


def visible_gpus() -> list:
    """The GPUs torch sees, as [(name, (major, minor))]; empty without CUDA."""
    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
            for i in range(torch.cuda.device_count())]


def check_gpus(expected: int = 0) -> str:
    """One line saying which GPUs this process got; ConfigError when torch cannot run on them (or sees too few)."""
    devices = visible_gpus()
    arch_list = torch.cuda.get_arch_list() if devices else []
    problem = gpu_problem(devices, arch_list, expected)
    if problem:
        raise ConfigError(problem)
    if not devices:
        return f"no GPU: training on CPU (torch {torch.__version__})"
    names = ", ".join(f"{name} (sm_{major}{minor})" for name, (major, minor) in devices)
    short = f"; expected {expected}" if expected and len(devices) < expected else ""
    return f"{len(devices)} GPU(s): {names}; torch {torch.__version__} built for {' '.join(arch_list)}{short}"


def exit_unless_gpus_usable(expected: int = 0) -> None:
    """For kernel scripts: print which GPUs this session got, or stop with one line when torch cannot use them."""
    try:
        print(check_gpus(expected))
    except ConfigError as error:
        raise SystemExit(f"paddy: {error}") from None
