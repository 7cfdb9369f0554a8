"""Peak memory meters: CUDA allocator statistics and the driver's process total, or the peak RSS on CPU.

Sizes are MiB; 1 GB = 1024 MB.
"""

import math
import os
import re
import resource
from pathlib import Path

import torch

from paddy.core.runtime import release_memory

CPU_DEVICE_LABEL = "cpu (peak RSS)"
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch.OutOfMemoryError, MemoryError, or a RuntimeError whose message says it ran out of memory."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)


class PeakMeter:
    """Resets and reads peak memory: CUDA allocator statistics, or the process's peak RSS on CPU."""

    def __init__(self, device):
        self.device = device
        self.cuda = str(device).startswith("cuda")

    def reset(self):
        """Free cached memory and start a fresh peak."""
        release_memory()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()

    def read(self):
        """{peak_allocated_mb, peak_reserved_mb, process_total_mb, device} since the last reset."""
        if not self.cuda:
            return {"process_total_mb": _peak_rss_mb(), "device": CPU_DEVICE_LABEL}
        torch.cuda.synchronize(self.device)
        mb = 2**20
        peak_reserved = torch.cuda.max_memory_reserved(self.device) / mb
        total = process_peak_mb(cuda_process_total_mb(self.device), torch.cuda.memory_reserved(self.device) / mb,
                                peak_reserved)
        return {"peak_allocated_mb": torch.cuda.max_memory_allocated(self.device) / mb,
                "peak_reserved_mb": peak_reserved, "process_total_mb": total,
                "device": f"cuda ({torch.cuda.get_device_name(self.device)})"}


def _reset_peak_rss():
    # Linux resets VmHWM when "5" is written to clear_refs; elsewhere the peak counts from process start.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb():
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    except OSError:
        match = None
    if match:
        return int(match.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def parse_gpu_processes(text: str, pid: int) -> float:
    """MB used by `pid` in torch.cuda.list_gpu_processes text; the sum over all listed when pid is absent
    (containers hide host pids); NaN when nothing is listed."""
    rows = [(int(p), float(mb)) for p, mb in re.findall(r"process\s+(\d+)\s+uses\s+([\d.]+)\s+MB", text)]
    mine = [mb for p, mb in rows if p == pid]
    if mine:
        return mine[0]
    return sum(mb for _, mb in rows) if rows else math.nan


def cuda_process_total_mb(device: str) -> float:
    """This process's total GPU memory as the driver reports it (includes the CUDA context); NaN if unknown."""
    try:
        text = torch.cuda.list_gpu_processes(device)
    except Exception:  # noqa: BLE001 - NVML may be missing or refused in a container; the figure is optional
        return math.nan
    return parse_gpu_processes(text, os.getpid())


def process_peak_mb(total_now: float, reserved_now: float, peak_reserved: float) -> float:
    """The process's peak GPU total: what it holds now beside torch's cache (the CUDA context) plus the cache's peak.

    The driver reports only the current total; if the caching allocator gave blocks back since the peak, the
    current total undercounts what the card had to hold.
    """
    return total_now - reserved_now + max(peak_reserved, reserved_now)
