"""`paddy probe`: peak memory per model, and the smallest gradient accumulation that fits a budget."""

import argparse
import functools
import sys

from paddy.cli.types import in_range, size
from paddy.core.config import is_power_of_two, limits_text

DESCRIPTION = """For each model: one epoch on the smallest class only, random weights (never downloads), every layer
training, at accum 1, then 2, 4, ... (micro-batch bs/accum) until the peak fits --budget-gb. Out of memory means
"does not fit". On CUDA the budget applies to the process's total GPU memory (torch.cuda.list_gpu_processes), else
to the peak reserved memory; without CUDA to the training process's peak resident memory (CPU peak RSS). Each try
runs in a fresh subprocess unless --no-subprocess. Note: accumulation with batch norm is not exactly equivalent to
the full batch (batch statistics come from each micro-batch).

--estimate answers without a GPU: each try's peak GPU memory (fp16 training in its steady state, the kit's learner)
is estimated from a trace on the meta device, calibrated on measured rows (bench/results/<gpu>/calibration.json), in
seconds per model; no image is decoded (the labels give the head's size). --gpu NAME sets the budget to that GPU's
usable memory. With a GPU, --estimate --check measures too, prints both, and appends the measurements to the
calibration rows."""


def power_of_two(text):
    """A positive power of two, as an argparse type."""
    value = in_range("max_accum")(text)
    if not is_power_of_two(value):
        raise argparse.ArgumentTypeError(f"must be a power of two (1, 2, 4, 8, ...), got {value}")
    return value


def _gpu_names():
    from paddy.core.accelerators import GPUS  # pure data: cheap enough for --help

    return list(GPUS)


def gpu_name(text):
    """A GPU named in paddy.core.accelerators.GPUS, as an argparse type."""
    if text.strip().lower() not in _gpu_names():
        raise argparse.ArgumentTypeError(f"unknown GPU {text!r}; known: {', '.join(_gpu_names())}")
    return text.strip().lower()


def register(subparsers):
    """Add the probe subcommand."""
    p = subparsers.add_parser("probe", help="peak memory per model; the smallest accum that fits a budget",
                              description=DESCRIPTION)
    p.add_argument("data", metavar="DATA", help="competition folder (paddy check must accept it), or an array cache")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", help="timm architecture, e.g. convnext_small.fb_in22k (use with --size)")
    what.add_argument("--plan", help="plan TOML file or built-in plan name (tiny, road-to-the-top)")
    p.add_argument("--size", type=size, help="training size: 224 or HEIGHT,WIDTH (with --arch)")
    p.add_argument("--bs", type=in_range("bs"), default=None,
                   help=f"effective batch size with --arch, {limits_text('bs')} (default 64)")
    p.add_argument("--item-size", type=size, default=None,
                   help="per-image resize with --arch, HEIGHT,WIDTH (default: from the data, as paddy train)")
    p.add_argument("--item-method", choices=("squish", "crop", "pad"), default=None,
                   help="item transform with --arch (default squish)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-gb", type=in_range("budget_gb", float), default=None,
                        help=f"memory budget in GB, {limits_text('budget_gb')} (default: the plan's budget_gb, "
                             "else 16)")
    budget.add_argument("--gpu", type=gpu_name, default=None,
                        help="budget for this GPU's usable memory: " + ", ".join(_gpu_names()))
    p.add_argument("--estimate", action="store_true",
                   help="estimate GPU memory from a trace instead of training (no GPU needed)")
    p.add_argument("--check", action="store_true",
                   help="with --estimate on a GPU: measure as well, print both, append to the calibration rows")
    p.add_argument("--max-accum", type=power_of_two, default=16,
                   help=f"largest accum to try, a power of two in {limits_text('max_accum')} (default 16)")
    p.add_argument("--max-images", type=in_range("n_images"), default=None,
                   help=f"cap on the smallest-class images trained per try, {limits_text('n_images')} (default: all)")
    p.add_argument("--out", metavar="DIR", help="write probe.csv, probe.md and probe.png here")
    p.add_argument("--write-plan", action="store_true",
                   help="write the chosen accum and budget back into the --plan file, rewritten with every member "
                        "resolved (comments and [defaults] are not kept; built-in plans are refused)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--no-subprocess", dest="subprocess", action="store_false",
                   help="run every try in this process (faster start; memory may leak between models)")
    p.set_defaults(func=run_probe)


def run_probe(args):
    """Resolve what to probe, run the probe, print its table (and where the plan was written)."""
    from paddy.probe.report import CSV_NAME, MARKDOWN_NAME, PLOT_NAME, format_probe_table
    from paddy.probe.run import run_probe as probe

    plan, configs, budget = probe_targets(args.arch, args.size, args.plan, args.bs, args.budget_gb, args.write_plan,
                                          item_size=args.item_size, item_method=args.item_method)
    if args.gpu:
        from paddy.core.accelerators import gpu

        budget = gpu(args.gpu).usable_gb
    if args.check or args.estimate:
        return run_estimate(args, plan, configs, budget)
    report = probe(args.data, configs, budget_gb=budget, max_accum=args.max_accum, device=args.device,
                   use_subprocess=args.subprocess, max_images=args.max_images, out=args.out,
                   plan=plan if args.write_plan else None, progress=sys.stdout.isatty(),
                   say=functools.partial(print, flush=True))
    print("\n" + format_probe_table(report))  # after the progress bars' last line
    if args.out:
        print(f"wrote {args.out}/{CSV_NAME}, {MARKDOWN_NAME} and {PLOT_NAME}")
    if args.write_plan:
        print(f"wrote the chosen accum into {plan.path}")


def run_estimate(args, plan, configs, budget):
    """--estimate: the estimated report (or, with --check, measured and estimated side by side); one line per member
    the tracer could not follow, exit 2 after the others' figures."""
    from paddy.core.errors import ConfigError
    from paddy.probe.report import CSV_NAME, MARKDOWN_NAME, PLOT_NAME, format_probe_table, write_probe_outputs
    from paddy.probe.run import estimate_probe, write_chosen_accum

    if not args.estimate:
        raise ConfigError("--check goes with --estimate: paddy probe DATA --estimate --check")
    if args.check:
        return run_check(args, plan, configs, budget)
    report = estimate_probe(args.data, configs, budget_gb=budget, max_accum=args.max_accum, gpu=args.gpu or "h200")
    if args.out:
        write_probe_outputs(report, args.out)
    print(format_probe_table(report))
    if args.out:
        print(f"wrote {args.out}/{CSV_NAME}, {MARKDOWN_NAME} and {PLOT_NAME}")
    failed = {r.arch: r.error for r in report.results if r.error}
    for config in configs:
        if config.arch in failed:
            print(f"paddy probe: error: {config.run_name}: {failed[config.arch]}", file=sys.stderr)
    if failed:
        return 2
    if args.write_plan:
        write_chosen_accum(plan, report)
        print(f"wrote the chosen accum (estimated, no GPU) into {plan.path}")
    return 0


def run_check(args, plan, configs, budget):
    """--estimate --check on a GPU: both reports, the comparison, the calibration file appended to."""
    from paddy.probe.check import check_probe, format_check, require_gpu
    from paddy.probe.report import format_probe_table, write_probe_outputs
    from paddy.probe.run import write_chosen_accum

    require_gpu()  # before the data check decodes every image
    report = check_probe(args.data, configs, budget_gb=budget, max_accum=args.max_accum, gpu=args.gpu,
                         max_images=args.max_images)
    if args.out:
        write_probe_outputs(report.measured, args.out)
    print(format_probe_table(report.measured) + "\n\nestimate vs measured:\n" + format_check(report))
    print(f"appended the measured tries to {report.calibration_file}")
    if args.write_plan:
        write_chosen_accum(plan, report.measured)
        print(f"wrote the chosen accum (measured) into {plan.path}")
    return 0


def probe_targets(arch, size, plan, bs, budget_gb, write_plan, item_size=None, item_method=None):
    """What to probe from the flags: (plan or None, configs, budget GB); ConfigError when unclear.
    `bs` None means 64 with --arch; `item_size` None: the data's (as paddy train)."""
    from paddy.core.config import TrainConfig
    from paddy.core.errors import ConfigError
    from paddy.core.plan import is_builtin, load_plan

    if write_plan and not plan:
        raise ConfigError("--write-plan needs --plan: it writes the chosen accum back into that plan file")
    if plan:
        if arch or size:
            raise ConfigError("give either --plan or --arch with --size, not both")
        if bs is not None or item_size is not None or item_method is not None:
            raise ConfigError("--bs, --item-size and --item-method apply only with --arch: with --plan each "
                              "member's (in the plan) are probed")
        loaded = load_plan(plan)
        if write_plan and is_builtin(loaded.path):
            raise ConfigError(f"--write-plan will not rewrite the kit's built-in plan {plan!r}; copy it first: "
                              f"cp {loaded.path} my-plan.toml, then probe --plan my-plan.toml")
        budget = loaded.budget_gb if budget_gb is None else budget_gb
        return loaded, loaded.members, budget
    if not arch or not size:
        raise ConfigError("give --arch with --size (e.g. --arch convnext_small --size 224), or --plan")
    config = TrainConfig(arch=arch, size=size, bs=64 if bs is None else bs, pretrained=False, finetune=False,
                         epochs=1, item_size=item_size, item_method=item_method or "squish")
    return None, (config,), 16.0 if budget_gb is None else budget_gb
