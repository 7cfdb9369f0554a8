"""`paddy probe`: peak memory per model, and the smallest gradient accumulation that fits a budget."""

import argparse
import sys

from paddy.cli.types import positive_float, positive_int, size
from paddy.core.config import is_power_of_two

DESCRIPTION = """For each model: one epoch on the smallest class only, random weights (never downloads), every layer
training, at accum 1, then 2, 4, ... (micro-batch bs/accum) until the peak fits --budget-gb. Out of memory means
"does not fit". On CUDA the budget applies to the process's total GPU memory (torch.cuda.list_gpu_processes), else
to the peak reserved memory; without CUDA to the training process's peak resident memory (CPU peak RSS). Each try
runs in a fresh subprocess unless --no-subprocess. Note: accumulation with batch norm is not exactly equivalent to
the full batch (batch statistics come from each micro-batch)."""


def power_of_two(text):
    """A positive power of two, as an argparse type."""
    value = positive_int(text)
    if not is_power_of_two(value):
        raise argparse.ArgumentTypeError(f"must be a power of two (1, 2, 4, 8, ...), got {value}")
    return value


def register(subparsers):
    """Add the probe subcommand."""
    p = subparsers.add_parser("probe", help="peak memory per model; the smallest accum that fits a budget",
                              description=DESCRIPTION)
    p.add_argument("data", metavar="DATA", help="competition folder (paddy check must accept it), or an array cache")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", help="timm architecture, e.g. convnext_small.fb_in22k (use with --size)")
    what.add_argument("--plan", help="plan TOML file or built-in plan name (tiny, road-to-the-top)")
    p.add_argument("--size", type=size, help="training size: 224 or HEIGHT,WIDTH (with --arch)")
    p.add_argument("--bs", type=positive_int, default=None, help="effective batch size with --arch (default 64)")
    p.add_argument("--item-size", type=size, default=None,
                   help="per-image resize with --arch, HEIGHT,WIDTH (default: from the data, as paddy train)")
    p.add_argument("--item-method", choices=("squish", "crop", "pad"), default=None,
                   help="item transform with --arch (default squish)")
    p.add_argument("--budget-gb", type=positive_float, default=None,
                   help="memory budget in GB (default: the plan's budget_gb, else 16)")
    p.add_argument("--max-accum", type=power_of_two, default=16, help="largest accum to try (default 16)")
    p.add_argument("--max-images", type=positive_int, default=None,
                   help="cap on the smallest-class images trained per try (default: all of them)")
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
    report = probe(args.data, configs, budget_gb=budget, max_accum=args.max_accum, device=args.device,
                   use_subprocess=args.subprocess, max_images=args.max_images, out=args.out,
                   plan=plan if args.write_plan else None, progress=sys.stdout.isatty())
    print("\n" + format_probe_table(report))  # after the progress bars' last line
    if args.out:
        print(f"wrote {args.out}/{CSV_NAME}, {MARKDOWN_NAME} and {PLOT_NAME}")
    if args.write_plan:
        print(f"wrote the chosen accum into {plan.path}")


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
