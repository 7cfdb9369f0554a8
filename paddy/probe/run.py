"""The probe run: check inputs, probe every member (each try in a fresh process), report, and pick the accum.

`choose_accum` is what `accum = "auto"` calls: the CLI, kernels and the demo pass it to `paddy.vision.run`.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from pathlib import Path

from fastprogress.fastprogress import progress_bar

from paddy.core.config import TrainConfig, check_power_of_two
from paddy.core.errors import ConfigError
from paddy.core.plan import Plan, write_plan
from paddy.core.runtime import resolve_device
from paddy.data import source
from paddy.probe.report import write_probe_outputs
from paddy.probe.search import ProbeReport, check_budget, chosen_accum, search_accum
from paddy.probe.worker import TryRequest, fit_one_epoch, measure_try, probe_items, search_in_subprocess
from paddy.vision.learner import check_arch


def probe_configs(data: str | Path, configs: Sequence[TrainConfig], budget_gb: float = 16.0, max_accum: int = 16,
                  device: str = "auto", use_subprocess: bool = True, max_images: int | None = None,
                  progress: bool = True) -> ProbeReport:
    """Probe each config (members sharing arch, size, bs and targets are probed once); return a ProbeReport."""
    check_budget(budget_gb)
    check_power_of_two(max_accum, "max accum")
    configs = check_configs(configs)
    device = resolve_device(device)
    items = None if use_subprocess else source.train_items(data)

    def measure(config):
        if use_subprocess:
            request = TryRequest(data=str(data), device=device, configs=(config,), max_images=max_images)
            return search_in_subprocess(request)[0]
        config = source.resolve_item_size(data, config)  # measured at the data's size; reported by its own name
        return measure_try(probe_items(items, config, max_images), config, device,
                           fit=functools.partial(fit_one_epoch, data=data))

    results, chosen, done = [], {}, {}
    for config in progress_bar(configs, leave=False) if progress and len(configs) > 1 else configs:
        key = (config.arch, config.size, config.bs, config.targets)
        if key not in done:
            done[key] = search_accum(measure, config, budget_gb, max_accum)
            results += done[key]
        chosen[config.run_name] = chosen_accum(done[key])
    return ProbeReport(results=tuple(results), chosen=chosen, budget_gb=float(budget_gb), device=device)


def check_configs(configs: Sequence[TrainConfig]) -> tuple:
    """Check every arch before any work starts (close matches in the error); return the configs as a tuple."""
    configs = tuple(configs)
    if not configs:
        raise ConfigError("nothing to probe: give --arch and --size, or a --plan with members")
    for config in configs:
        check_arch(config.arch)
    return configs


def run_probe(data: str | Path, configs: Sequence[TrainConfig], budget_gb: float = 16.0, max_accum: int = 16,
              device: str = "auto", use_subprocess: bool = True, max_images: int | None = None,
              out: str | Path | None = None, plan: Plan | None = None, progress: bool = True) -> ProbeReport:
    """Check inputs and the data folder, probe every config, write the table/CSV/chart to `out` and, when `plan`
    is given, the chosen accum back into it."""
    check_budget(budget_gb)
    check_power_of_two(max_accum, "max accum")
    configs = check_configs(configs)
    device = resolve_device(device)  # a bad --device fails now, not after the check has decoded every image
    for config in configs if source.is_array_cache(data) else configs[:1]:  # a cache: each item size
        source.require_ready(data, source.resolve_item_size(data, config), progress=progress)
    report = probe_configs(data, configs, budget_gb=budget_gb, max_accum=max_accum, device=device,
                           use_subprocess=use_subprocess, max_images=max_images, progress=progress)
    if out is not None:
        write_probe_outputs(report, out)
    if plan is not None:
        write_chosen_accum(plan, report)
    return report


def choose_accum(data: str | Path, config: TrainConfig, budget_gb: float, max_accum: int = 16,
                 device: str | None = None, use_subprocess: bool = True, max_images: int | None = None) -> int:
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


def plan_with_accum(plan: Plan, chosen: dict) -> Plan:
    """A copy of `plan` whose members carry the chosen accum; ConfigError naming members that fit nowhere."""
    missing = [m.run_name for m in plan.members if chosen.get(m.run_name) is None]
    if missing:
        raise ConfigError(f"no accum fits the budget for {', '.join(missing)}; plan not rewritten: raise "
                          f"--max-accum or --budget-gb, or shrink those members")
    members = tuple(m.replace(accum=chosen[m.run_name]) for m in plan.members)
    return dataclasses.replace(plan, members=members)


def write_chosen_accum(plan: Plan, report: ProbeReport, path: str | Path | None = None) -> Path:
    """Write `plan` back (to its own file unless `path`) with each member's chosen accum and the budget they were
    chosen for; return the path."""
    chosen = dataclasses.replace(plan_with_accum(plan, report.chosen), budget_gb=report.budget_gb)
    return write_plan(chosen, path or plan.path)
