"""The probe run: check inputs, probe every member (each try in a fresh process), report, and pick the accum.

Without a GPU, `estimate_probe` answers the same question from a trace (paddy.probe.estimate): rows and outputs in
the same forms, labelled "estimated, no GPU". `choose_accum` is what `accum = "auto"` calls (the CLI, kernels and
the demo pass it to `paddy.vision.run`); it estimates when the run's device is not CUDA.
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from fastprogress.fastprogress import progress_bar

from paddy.core.config import TrainConfig, check_power_of_two
from paddy.core.errors import ConfigError
from paddy.core.plan import Plan, write_plan
from paddy.core.runtime import resolve_device
from paddy.data import source
from paddy.data.folder import target_vocabs
from paddy.probe.calibrate import load_calibration
from paddy.probe.estimate import estimate_configs
from paddy.probe.report import write_probe_outputs
from paddy.probe.search import (
    ProbeReport,
    TryResult,
    accum_candidates,
    check_budget,
    chosen_accum,
    probe_config,
    search_accum,
)
from paddy.probe.worker import TryRequest, fit_one_epoch, measure_try, probe_items, search_in_subprocess
from paddy.vision.learner import check_arch


def probe_configs(data: str | Path, configs: Sequence[TrainConfig], budget_gb: float = 16.0, max_accum: int = 16,
                  device: str = "auto", use_subprocess: bool = True, max_images: int | None = None,
                  progress: bool = True, say: Callable[[str], None] | None = None) -> ProbeReport:
    """Probe each config (members sharing arch, size, bs and targets are probed once); return a ProbeReport.
    `say(text)`, when given, hears each try as it starts."""
    check_budget(budget_gb)
    check_power_of_two(max_accum, "max accum")
    configs = check_configs(configs)
    device = resolve_device(device)
    items = None if use_subprocess else source.train_items(data)

    def measure(config):
        if say:
            say(f"probing {config.arch} at {config.size[0]}x{config.size[1]}, accum {config.accum} (micro-batch "
                f"{config.micro_bs}) on {device}...")
        if use_subprocess:
            request = TryRequest(data=str(data), device=device, configs=(config,), max_images=max_images)
            return search_in_subprocess(request)[0]
        config = source.resolve_item_size(data, config)  # measured at the data's size; reported by its own name
        return measure_try(probe_items(items, config, max_images), config, device,
                           fit=functools.partial(fit_one_epoch, data=data))

    results, chosen, done = [], {}, {}
    for config in progress_bar(configs, leave=False) if progress and len(configs) > 1 and not say else configs:
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
              out: str | Path | None = None, plan: Plan | None = None, progress: bool = True,
              say: Callable[[str], None] | None = None) -> ProbeReport:
    """Check inputs and the data folder, probe every config, write the table/CSV/chart to `out` and, when `plan`
    is given, the chosen accum back into it. `say(text)`, when given, hears each long step as it starts."""
    check_budget(budget_gb)
    check_power_of_two(max_accum, "max accum")
    configs = check_configs(configs)
    device = resolve_device(device)  # a bad --device fails now, not after the check has decoded every image
    if say:
        say(f"checking {data} ({source.count_images(data)} images)...")
    for config in configs if source.is_array_cache(data) else configs[:1]:  # a cache: each item size
        source.require_ready(data, source.resolve_item_size(data, config), progress=progress)
    report = probe_configs(data, configs, budget_gb=budget_gb, max_accum=max_accum, device=device,
                           use_subprocess=use_subprocess, max_images=max_images, progress=progress, say=say)
    if out is not None:
        write_probe_outputs(report, out)
    if plan is not None:
        write_chosen_accum(plan, report)
    return report


ESTIMATED = "estimated, no GPU"


def uses_estimate(device: str) -> bool:
    """Whether the probe estimates rather than measures on `device` (resolved): anything but CUDA."""
    return not str(device).startswith("cuda")


def estimate_probe(data: str | Path, configs: Sequence[TrainConfig], budget_gb: float = 16.0, max_accum: int = 16,
                   gpu: str = "h200", calibration_root: str | Path | None = None) -> ProbeReport:
    """The probe's report from estimates: every config at accum 1, 2, 4, ... until its estimated process total fits
    `budget_gb`, calibrated on `gpu`'s rows. A member the tracer cannot follow gets an error row and no accum."""
    check_budget(budget_gb)
    check_power_of_two(max_accum, "max accum")
    configs = tuple(probe_config(c) for c in check_configs(configs))
    targets = tuple(dict.fromkeys(t for c in configs for t in c.targets))
    vocabs = target_vocabs(source.train_items(data), targets)  # the head's size: no image is decoded
    calibration = load_calibration(gpu, calibration_root)
    device = f"{ESTIMATED} (calibrated on {calibration.gpu})"
    firsts = {}
    for config in configs:  # members sharing arch, size, bs and targets are estimated once, as the probe does
        firsts.setdefault((config.arch, config.size, config.bs, config.targets), config)
    traced = [source.resolve_item_size(data, c) for c in firsts.values()]  # the DataLoader's batch at the data's size
    estimates = estimate_configs(traced, vocabs, lambda c: accum_candidates(c.bs, max_accum), calibration, budget_gb)
    rows = {key: [_estimate_row(e, device).judged(budget_gb) for e in estimates[config]]
            for key, config in zip(firsts, traced, strict=True)}
    chosen = {c.run_name: chosen_accum(rows[(c.arch, c.size, c.bs, c.targets)]) for c in configs}
    return ProbeReport(results=tuple(r for key in firsts for r in rows[key]), chosen=chosen,
                       budget_gb=float(budget_gb), device=device)


def _estimate_row(estimate, device):
    return TryResult(arch=estimate.arch, size=estimate.size, accum=estimate.accum, micro_bs=estimate.micro_bs,
                     estimated_alloc_mb=estimate.estimated_alloc_mb, estimated_total_mb=estimate.estimated_total_mb,
                     device=device, error=estimate.error, seconds=estimate.seconds)


def choose_accum(data: str | Path, config: TrainConfig, budget_gb: float, max_accum: int = 16,
                 device: str | None = None, use_subprocess: bool = True, max_images: int | None = None,
                 estimate: bool | None = None) -> int:
    """The smallest accum at which `config` trains within `budget_gb` (for `accum = "auto"`), measured on CUDA and
    estimated elsewhere (`estimate` True or False forces either); ConfigError if none."""
    device = resolve_device(device or config.device)
    estimate = uses_estimate(device) if estimate is None else estimate
    if estimate:
        report = estimate_probe(data, [config], budget_gb=budget_gb, max_accum=max_accum)
    else:
        report = probe_configs(data, [config], budget_gb=budget_gb, max_accum=max_accum, device=device,
                               use_subprocess=use_subprocess, max_images=max_images, progress=False)
    accum = report.chosen[config.run_name]
    if accum is None:
        worst = report.results[-1]
        if worst.error and not worst.oom:
            raise ConfigError(f"{worst.error}; give accum a number instead of 'auto'")
        # A try killed for memory has no measured peak: say it ran out rather than "needs nan MB".
        need = "runs out of memory" if math.isnan(worst.budget_mb) else f"needs {worst.budget_mb:.0f} MB"
        how = f" ({ESTIMATED})" if estimate else ""
        raise ConfigError(f"{config.arch} at {worst.size} {need}{how} even at accum "
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
