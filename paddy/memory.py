"""The memory probe: peak memory of one epoch on the smallest class, accum doubled until the peak fits a budget.

On CUDA a try records `torch.cuda.max_memory_allocated`, `max_memory_reserved` and the process total that
`torch.cuda.list_gpu_processes` reports, with torch's cache counted at its peak (`process_peak_mb`); the budget
applies to the process total (what a card must hold), or to the reserved peak when the total is unknown. Without
CUDA the same flow measures the peak resident memory (RSS) of the training process, labelled "cpu (peak RSS)", and
the budget applies to that. Sizes are MiB; 1 GB = 1024 MB.

Each try runs by default in a fresh `python -m paddy.memory` subprocess, so nothing leaks between models; it
writes its result as JSON. An out-of-memory error means "does not fit", never a crash.
"""

import argparse
import dataclasses
import gc
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from paddy import atomic
from paddy.config import TrainConfig
from paddy.errors import ConfigError, PaddyError

CPU_DEVICE_LABEL = "cpu (peak RSS)"
CSV_NAME = "probe.csv"
PLOT_NAME = "probe.png"
MARKDOWN_NAME = "probe.md"
COLUMNS = ("arch", "size", "accum", "micro_bs", "peak_allocated_mb", "peak_reserved_mb", "process_total_mb",
           "device", "fits", "seconds", "images_per_s", "error")
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


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

    @property
    def budget_mb(self):
        """The figure the budget applies to: process total, else reserved peak, else allocated peak."""
        for value in (self.process_total_mb, self.peak_reserved_mb, self.peak_allocated_mb):
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


def is_out_of_memory(error):
    """True for torch.OutOfMemoryError, MemoryError, or a RuntimeError whose message says it ran out of memory."""
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)


def accum_candidates(bs, max_accum=16):
    """1, 2, 4, ... up to max_accum and never beyond bs."""
    check_max_accum(max_accum)
    candidates, accum = [], 1
    while accum <= min(max_accum, bs):
        candidates.append(accum)
        accum *= 2
    return candidates


def check_max_accum(max_accum):
    """Raise ConfigError unless max_accum is a power of two."""
    if not isinstance(max_accum, int) or max_accum < 1 or max_accum & (max_accum - 1):
        raise ConfigError(f"max accum must be a power of two (1, 2, 4, ...), got {max_accum!r}")


def check_budget(budget_gb):
    """Raise ConfigError unless the budget is a positive number of GB."""
    if isinstance(budget_gb, bool) or not isinstance(budget_gb, (int, float)) or not budget_gb > 0:
        raise ConfigError(f"budget must be a positive number of GB, got {budget_gb!r}")


def probe_config(config, accum=1):
    """What a try trains: one epoch, random weights, all layers (no fine-tuning), at `accum`."""
    return config.replace(accum=accum, epochs=1, finetune=False, pretrained=False)


def search_accum(measure, config, budget_gb, max_accum=16):
    """Try accum 1, 2, 4, ... with `measure(config) -> TryResult` until one fits; return every try, judged."""
    check_budget(budget_gb)
    results = []
    for accum in accum_candidates(config.bs, max_accum):
        result = measure(probe_config(config, accum)).judged(budget_gb)
        results.append(result)
        if result.fits:
            break
    return results


def chosen_accum(results):
    """The accum of the first try that fits, or None."""
    return next((r.accum for r in results if r.fits), None)


def probe_items(items, config, max_images=None, min_images=None):
    """The smallest class, capped at max_images, repeated up to min_images and at least one full training batch."""
    import pandas as pd

    from paddy.data import smallest_class_items

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


class PeakMeter:
    """Resets and reads peak memory: CUDA allocator statistics, or the process's peak RSS on CPU."""

    def __init__(self, device):
        self.device = device
        self.cuda = str(device).startswith("cuda")

    def reset(self):
        """Free cached memory and start a fresh peak."""
        release_memory(self.device)
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()

    def read(self):
        """{peak_allocated_mb, peak_reserved_mb, process_total_mb, device} since the last reset."""
        if not self.cuda:
            return {"process_total_mb": _peak_rss_mb(), "device": CPU_DEVICE_LABEL}
        import torch

        torch.cuda.synchronize(self.device)
        mb = 2**20
        peak_reserved = torch.cuda.max_memory_reserved(self.device) / mb
        total = process_peak_mb(cuda_process_total_mb(self.device), torch.cuda.memory_reserved(self.device) / mb,
                                peak_reserved)
        return {"peak_allocated_mb": torch.cuda.max_memory_allocated(self.device) / mb,
                "peak_reserved_mb": peak_reserved, "process_total_mb": total,
                "device": f"cuda ({torch.cuda.get_device_name(self.device)})"}


def release_memory(device="cpu"):
    """Collect garbage (fastai learners hold reference cycles) and hand cached CUDA blocks back."""
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


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
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def parse_gpu_processes(text, pid):
    """MB used by `pid` in torch.cuda.list_gpu_processes text; the sum over all listed when pid is absent
    (containers hide host pids); NaN when nothing is listed."""
    rows = [(int(p), float(mb)) for p, mb in re.findall(r"process\s+(\d+)\s+uses\s+([\d.]+)\s+MB", text)]
    mine = [mb for p, mb in rows if p == pid]
    if mine:
        return mine[0]
    return sum(mb for _, mb in rows) if rows else math.nan


def cuda_process_total_mb(device):
    """This process's total GPU memory as the driver reports it (includes the CUDA context); NaN if unknown."""
    import torch

    try:
        text = torch.cuda.list_gpu_processes(device)
    except Exception:  # noqa: BLE001 - NVML may be missing or refused in a container; the figure is optional
        return math.nan
    return parse_gpu_processes(text, os.getpid())


def process_peak_mb(total_now, reserved_now, peak_reserved):
    """The process's peak GPU total: what it holds now beside torch's cache (the CUDA context) plus the cache's peak.

    The driver reports only the current total; if the caching allocator gave blocks back since the peak, the
    current total undercounts what the card had to hold.
    """
    return total_now - reserved_now + max(peak_reserved, reserved_now)


def fit_one_epoch(items, config, device, cbs=()):
    """Build the kit's learner for `config` and train one epoch with every layer; return (images, seconds) of the
    training batches after the first (warm-up excluded): (0, 0.0) when there was only one."""
    from paddy.data import image_dataloaders
    from paddy.train import build_learner

    dls = image_dataloaders(items, config, device=device)
    learn = build_learner(dls, config, device)
    learn.unfreeze()
    clock = _throughput_callback()
    for cb in (clock, *cbs):
        learn.add_cb(cb)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, config.lr)
    learn.remove_cbs(list(learn.cbs))  # break the learner's cycles early so its memory goes with it
    return clock.images, clock.seconds


def _throughput_callback():
    from fastai.callback.core import Callback

    class Throughput(Callback):
        """Images and seconds of the training batches after the first (CUDA warm-up excluded)."""

        def before_fit(self):
            self.first, self.images, self.seconds = None, 0, 0.0

        def after_batch(self):
            if not self.training:
                return
            if str(self.dls.device).startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.first is None:
                self.first = now
                return
            self.images += len(self.xb[0])
            self.seconds = now - self.first

    return Throughput()


def measure_try(items, config, device, fit=fit_one_epoch):
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
    release_memory(device)
    return TryResult(arch=config.arch, size=f"{config.size[0]}x{config.size[1]}", accum=config.accum,
                     micro_bs=config.micro_bs, seconds=round(time.perf_counter() - start, 2),
                     images_per_s=images / fit_seconds if images and fit_seconds > 0 else math.nan,
                     oom=bool(oom_message), error=oom_message, **peaks)


def measure_in_subprocess(data, config, device, max_images=None, timeout=None):
    """Run one try in a fresh `python -m paddy.memory` process and return its TryResult."""
    return search_in_subprocess(data, [config], device, max_images=max_images, timeout=timeout)[0]


def search_in_subprocess(data, configs, device, budget_gb=None, max_images=None, min_images=None, timeout=None):
    """Run tries in order in one fresh process (stopping at the first fit when `budget_gb` is given)."""
    with tempfile.TemporaryDirectory(prefix="paddy-probe-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "paddy.memory", str(data), "--device", device, "--result", str(out),
                   "--configs", json.dumps([c.to_dict() for c in configs])]
        command += ["--max-images", str(max_images)] if max_images else []
        command += ["--budget-gb", str(budget_gb)] if budget_gb else []
        command += ["--min-images", str(min_images)] if min_images else []
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            done = None
        results = [TryResult(**r) for r in json.loads(out.read_text())] if out.is_file() else []
    if done is None:
        raise ProbeTimeout(f"probing {configs[0].arch} took over {timeout:.0f} s", results)
    if results:
        return results
    if done.returncode in (-9, 137):  # killed by the kernel's OOM killer: that is "does not fit" too
        config = configs[0]
        return [TryResult(arch=config.arch, size=f"{config.size[0]}x{config.size[1]}", accum=config.accum,
                          micro_bs=config.micro_bs, oom=True, error="killed (out of memory)", device=device)]
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise PaddyError(f"probing {configs[0].arch} at accum {configs[0].accum} failed: {last}; rerun with "
                     f"--no-subprocess to see the whole traceback")


def probe_configs(data, configs, budget_gb=16.0, max_accum=16, device="auto", use_subprocess=True,
                  max_images=None, progress=True):
    """Probe each config (members sharing arch, size, bs and targets are probed once); return a ProbeReport."""
    from paddy.runtime import resolve_device

    check_budget(budget_gb)
    check_max_accum(max_accum)
    configs = check_configs(configs)
    device = resolve_device(device)
    items = None if use_subprocess else _items(data)

    def measure(config):
        if use_subprocess:
            return measure_in_subprocess(data, config, device, max_images=max_images)
        return measure_try(probe_items(items, config, max_images), config, device)

    results, chosen, done = [], {}, {}
    for config in _progress(configs, progress):
        key = (config.arch, config.size, config.bs, config.targets)
        if key not in done:
            done[key] = search_accum(measure, config, budget_gb, max_accum)
            results += done[key]
        chosen[config.run_name] = chosen_accum(done[key])
    return ProbeReport(results=tuple(results), chosen=chosen, budget_gb=float(budget_gb), device=device)


def check_configs(configs):
    """Check every arch before any work starts (close matches in the error); return the configs as a tuple."""
    from paddy.train import check_arch

    configs = tuple(configs)
    if not configs:
        raise ConfigError("nothing to probe: give --arch and --size, or a --plan with members")
    for config in configs:
        check_arch(config.arch)
    return configs


def _items(data):
    from paddy.data import train_items

    return train_items(data)


def _progress(configs, show):
    if not show or len(configs) < 2:
        return configs
    from fastprogress.fastprogress import progress_bar

    return progress_bar(configs, leave=False)


def probe_targets(arch=None, size=None, plan=None, bs=None, budget_gb=None, write_plan=False):
    """What the CLI probes: (plan or None, configs, budget GB) from --arch/--size/--bs or --plan; ConfigError if
    unclear. `bs` None means 64 with --arch."""
    from paddy.plan import is_builtin, load_plan

    if write_plan and not plan:
        raise ConfigError("--write-plan needs --plan: it writes the chosen accum back into that plan file")
    if plan:
        if arch or size:
            raise ConfigError("give either --plan or --arch with --size, not both")
        if bs is not None:
            raise ConfigError("--bs applies only with --arch: with --plan each member's bs (in the plan) is probed")
        loaded = load_plan(plan)
        if write_plan and is_builtin(loaded.path):
            raise ConfigError(f"--write-plan will not rewrite the kit's built-in plan {plan!r}; copy it first: "
                              f"cp {loaded.path} my-plan.toml, then probe --plan my-plan.toml")
        budget = loaded.budget_gb if budget_gb is None else budget_gb
        return loaded, loaded.members, budget
    if not arch or not size:
        raise ConfigError("give --arch with --size (e.g. --arch convnext_small --size 224), or --plan")
    config = TrainConfig(arch=arch, size=size, bs=64 if bs is None else bs, pretrained=False, finetune=False,
                         epochs=1)
    return None, (config,), 16.0 if budget_gb is None else budget_gb


def run_probe(data, configs, budget_gb=16.0, max_accum=16, device="auto", use_subprocess=True, max_images=None,
              out=None, plan=None, progress=True):
    """Check inputs and the data folder, probe every config, write the table/CSV/chart to `out` and, when `plan`
    is given, the chosen accum back into it."""
    from paddy.check import require_valid
    from paddy.runtime import resolve_device

    check_budget(budget_gb)
    check_max_accum(max_accum)
    configs = check_configs(configs)
    device = resolve_device(device)  # a bad --device fails now, not after the check has decoded every image
    require_valid(data, progress=progress)
    report = probe_configs(data, configs, budget_gb=budget_gb, max_accum=max_accum, device=device,
                           use_subprocess=use_subprocess, max_images=max_images, progress=progress)
    if out is not None:
        write_outputs(report, out)
    if plan is not None:
        write_chosen_accum(plan, report)
    return report


def choose_accum(data, config, budget_gb, max_accum=16, device=None, use_subprocess=True, max_images=None):
    """The smallest accum at which `config` trains within `budget_gb` (for `accum = "auto"`); ConfigError if none."""
    report = probe_configs(data, [config], budget_gb=budget_gb, max_accum=max_accum,
                           device=device or config.device, use_subprocess=use_subprocess, max_images=max_images,
                           progress=False)
    accum = report.chosen[config.run_name]
    if accum is None:
        worst = report.results[-1]
        # A try killed for memory has no measured peak: say it ran out rather than "needs nan MB".
        need = "runs out of memory" if math.isnan(worst.budget_mb) else f"needs {worst.budget_mb:.0f} MB"
        raise ConfigError(f"{config.arch} at {worst.size} {need} even at accum "
                          f"{worst.accum}, over the {budget_gb} GB budget: use a smaller size or arch, or more memory")
    return accum


def results_frame(results):
    """The tries as a DataFrame with the table's columns."""
    import pandas as pd

    return pd.DataFrame([{c: r.to_dict()[c] for c in COLUMNS} for r in results], columns=list(COLUMNS))


def format_table(report):
    """The tries as a markdown table, with the chosen accum per member below it."""
    head = ["arch", "size", "accum", "micro bs", "peak alloc MB", "peak reserved MB", "process total MB", "device",
            "fits", "seconds", "images/s"]
    rows = [[r.arch, r.size, r.accum, r.micro_bs, format_mb(r.peak_allocated_mb), format_mb(r.peak_reserved_mb),
             format_mb(r.process_total_mb), r.device, ("yes" if r.fits else "OOM" if r.oom else "no"),
             f"{r.seconds:.1f}", format_mb(r.images_per_s)] for r in report.results]
    lines = markdown_table(head, rows)
    lines.append("")
    lines.append(f"budget {report.budget_gb:g} GB on {report.device}; chosen accum per member:")
    lines += [f"- {name}: {accum if accum else 'does not fit at any accum tried'}"
              for name, accum in report.chosen.items()]
    return "\n".join(lines)


def markdown_table(head, rows):
    """The lines of a markdown table: a header, its rule, one line per row of cells."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(str(c) for c in cells) + " |" for cells in rows]


def format_mb(value):
    """A whole number for a table cell; blank for a missing (None or NaN) figure."""
    return "" if value is None or math.isnan(value) else f"{value:.0f}"


def plot_results(report, path):
    """A bar chart of each try's budgeted MB (fitting tries green) with the budget line, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.arch}\n{r.size} accum {r.accum}" for r in report.results]
    values = [0 if math.isnan(r.budget_mb) else r.budget_mb for r in report.results]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4.5))
    ax.bar(range(len(values)), values, color=["tab:green" if r.fits else "tab:red" for r in report.results])
    ax.axhline(report.budget_gb * 1024, color="black", linestyle="--", label=f"budget {report.budget_gb:g} GB")
    ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("peak MB (" + ("CPU RSS" if report.device == "cpu" else "GPU process total") + ")")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def write_outputs(report, out):
    """Write probe.csv, probe.md and probe.png into `out`; return their paths."""
    out = Path(out)
    return [atomic.write_csv(out / CSV_NAME, results_frame(report.results)),
            atomic.write_text(out / MARKDOWN_NAME, format_table(report) + "\n"),
            plot_results(report, out / PLOT_NAME)]


def plan_with_accum(plan, chosen):
    """A copy of `plan` whose members carry the chosen accum; ConfigError naming members that fit nowhere."""
    missing = [m.run_name for m in plan.members if chosen.get(m.run_name) is None]
    if missing:
        raise ConfigError(f"no accum fits the budget for {', '.join(missing)}; plan not rewritten: raise "
                          f"--max-accum or --budget-gb, or shrink those members")
    members = tuple(m.replace(accum=chosen[m.run_name]) for m in plan.members)
    return dataclasses.replace(plan, members=members)


def write_chosen_accum(plan, report, path=None):
    """Write `plan` back (to its own file unless `path`) with each member's chosen accum and the budget they were
    chosen for; return the path."""
    from paddy.plan import write_plan

    chosen = dataclasses.replace(plan_with_accum(plan, report.chosen), budget_gb=report.budget_gb)
    return write_plan(chosen, path or plan.path)


def _main(argv=None):
    """`python -m paddy.memory DATA --configs JSON --device D --result PATH`: tries in order, results as JSON."""
    parser = argparse.ArgumentParser(prog="python -m paddy.memory", description=_main.__doc__)
    parser.add_argument("data")
    parser.add_argument("--configs", required=True, help="JSON list of TrainConfig dicts, tried in order")
    parser.add_argument("--device", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--min-images", type=int, default=None)
    parser.add_argument("--budget-gb", type=float, default=None, help="stop after the first try that fits")
    args = parser.parse_args(argv)
    import fastai.vision.all  # noqa: F401 - import before the first try, so its seconds are training, not imports

    items, results = _items(args.data), []
    for data in json.loads(args.configs):
        config = TrainConfig.from_dict(data)
        result = measure_try(probe_items(items, config, args.max_images, args.min_images), config, args.device)
        results.append(result.judged(args.budget_gb) if args.budget_gb else result)
        atomic.write_json(args.result, [r.to_dict() for r in results])  # after each try: a crash keeps the rest
        if args.budget_gb and results[-1].fits:
            break
    return 0


if __name__ == "__main__":
    sys.exit(_main())
