"""`paddy train`: one run into a folder, or every member of a plan into a runs folder."""

import argparse
import functools
import sys

from paddy.cli.types import in_range, size
from paddy.core.config import limits_text

DESCRIPTION = """Train a timm architecture with fastai and write a run folder: config.json, metrics.csv,
metrics.png, model.pkl, vocab.json, valid_probs_<target>.csv, test_probs_<target>.csv (test-time augmented) and
result.json (written last). An interrupted run resumes from its last epoch checkpoint when you rerun the same
command; a complete run folder is skipped.

Gradient accumulation: --accum K runs micro-batches of BS/K images and steps the optimizer once every BS images
(fastai's GradientAccumulation counts samples), so the effective batch and learning rate stay those of --bs while
peak memory drops. It is exactly equivalent only for models without batch norm: with batch norm each micro-batch
normalises with its own statistics, so results differ slightly from a true batch of BS.

Cross-validation: --folds K (or folds = K in a plan) writes RUNS/folds.csv once (image_id, fold: stratified by
label, varieties spread, seeded by split_seed; a different train.csv under the same RUNS is refused) and trains
RUNS/<member>/fold-<i>/ for each fold, an ordinary run folder whose validation set is fold i (with --out, RUNS is
the folder above OUT). When all K folds are complete, the member folder gets oof_probs_<target>.csv (every
training image once, predicted by the fold model that never saw it), test_probs_<target>.csv (the folds'
average) and result.json, so paddy ensemble reads it as one run and can fit blend weights on it."""

EPILOG = """examples:
  paddy train data/ --arch resnet10t --size 128 --epochs 1 --no-pretrained --out runs/tiny
  paddy train data/ --arch convnext_small.fb_in22k --size 128 --accum 2 --targets label,variety --out runs/cs
  paddy train data/ --plan tiny --runs runs/          (built-in plans: tiny, road-to-the-top)
  paddy train data/ --plan tiny --runs runs/ --folds 5     (runs/<member>/fold-<i>/, then OOF files per member)
  paddy train data/ --plan tiny --runs runs/ --folds 5 --fold 2    (one fold of each member, e.g. per machine)
"""


SIDES = f"each side {limits_text('side')} px"


def register(subparsers):
    """Add `paddy train`."""
    parser = subparsers.add_parser("train", help="train one model, or every member of a plan",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", metavar="DATA",
                        help="competition folder, or an array cache (paddy resize --format array) "
                             "(default on Kaggle: the competition's input folder)")
    one = parser.add_argument_group("one run")
    one.add_argument("--arch", help="timm name, e.g. convnext_small.fb_in22k, vit_large_patch16_224, resnet10t")
    one.add_argument("--size", type=size,
                     help=f"batch image size after augmentation: 224 or HEIGHT,WIDTH, {SIDES} (224)")
    one.add_argument("--item-size", type=size,
                     help=f"per-image resize, HEIGHT,WIDTH, {SIDES} (default: from the data: an array cache's item "
                          "size, else the images' size, at most 480 a side)")
    one.add_argument("--item-method", choices=("squish", "crop", "pad"), help="(squish)")
    one.add_argument("--epochs", type=in_range("epochs"), help=f"{limits_text('epochs')} (12)")
    one.add_argument("--lr", type=in_range("lr", float), help=f"{limits_text('lr')} (0.01)")
    one.add_argument("--bs", type=in_range("bs"),
                     help=f"effective batch size, {limits_text('bs')}, at most the training split (64)")
    one.add_argument("--accum",
                     help="accumulate gradients over K micro-batches of BS/K (power of two, or 'auto': the "
                          "memory probe picks the smallest that fits 15 GB, one T4); "
                          "not exactly equivalent with batch norm (1)")
    one.add_argument("--finetune", dest="finetune", action="store_true", default=None,
                     help="fastai's fine_tune: one epoch of the head alone, then every layer (the default with "
                          "pretrained weights)")
    one.add_argument("--no-finetune", dest="finetune", action="store_false", default=None,
                     help="train all layers from the start, one fit_one_cycle (the default with --no-pretrained)")
    one.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                     help="random initial weights (no download); trains without fine_tune's frozen epoch")
    one.add_argument("--seed", type=in_range("seed"), help=f"{limits_text('seed')} (42)")
    one.add_argument("--valid-pct", type=float, help="share of the training images held out (0.2)")
    one.add_argument("--split-seed", type=in_range("seed"),
                     help=f"seed of the validation split, {limits_text('seed')} (42)")
    one.add_argument("--split", choices=("hash", "random"),
                     help="hash: by a seeded hash of each image id, whatever their order; random: the images "
                          "fastai's RandomSplitter(valid_pct, seed) picks from the images sorted by id (hash)")
    one.add_argument("--targets", help="label, or label,variety for a two-headed model (label)")
    one.add_argument("--target-weights", help="loss weight per target, e.g. 1,0.5")
    one.add_argument("--tta",
                     help=f"N,BETA (fastai tta; N {limits_text('tta_n')}, BETA 0 to 1), flip, or none (4,0.25)")
    one.add_argument("--device", help="auto, cpu, cuda or cuda:N (auto); with --plan: for every member")
    one.add_argument("--workers", type=in_range("num_workers"),
                     help=f"DataLoader workers, {limits_text('num_workers')} (fastai's default); with --plan: for "
                          "every member")
    one.add_argument("--checkpoint-every", type=float, metavar="SECONDS",
                     help="seconds between checkpoints for a resume, 0: every epoch (600: a shorter run writes "
                          "none); with --plan: for every member")
    one.add_argument("--out", help="run folder to write (with --folds: the member folder; folds.csv goes beside it)")
    one.add_argument("--devices", type=in_range("devices"), default=None,
                     help="train each run data-parallel on N processes: N GPUs, or with --device cpu N CPU processes "
                          "(gloo); --bs stays the global batch (each process: bs/(N x accum) a micro-batch); only "
                          "process 0 writes the run folder. With --plan: overrides the plan's devices (1)")
    one.add_argument("--sync-bn", action="store_true",
                     help="with --devices: synchronise batch norm statistics across processes (timm's converter, "
                          "which keeps BatchNormAct2d's activation). Off by default: each process normalises with "
                          "its own micro-batch, as with --accum")
    folds = parser.add_argument_group("cross-validation")
    folds.add_argument("--folds", type=in_range("folds"), metavar="K",
                       help=f"K-fold cross-validation, K {limits_text('folds')}: K runs, each holding one fold out "
                            "(stratified by label, seeded by split_seed), then out-of-fold and fold-averaged test "
                            "probabilities; with --plan: for every member")
    folds.add_argument("--fold", type=in_range("folds"), metavar="I",
                       help="train only fold I (0..K-1), e.g. one per machine; the member's OOF files appear when "
                            "all K are complete")
    many = parser.add_argument_group("a plan")
    many.add_argument("--plan", help="plan TOML file or built-in plan name (tiny, road-to-the-top)")
    many.add_argument("--runs", help="folder that gets one run folder per plan member")
    many.add_argument("--lanes", default=None,
                      help="members trained at once, one process per GPU (CUDA_VISIBLE_DEVICES per lane): auto "
                           "(default) = one lane per visible GPU, 1 on CPU (one after the other, in this process); "
                           "N > 1 with --device cpu runs N CPU processes. Lane logs: RUNS/.lanes/")
    parser.set_defaults(func=run_train)


def run_train(args):
    """Parse the arguments into a config or plan, train, print one line per run."""
    from paddy.core.errors import ConfigError
    from paddy.vision.distributed import launch_distributed
    from paddy.vision.lanes import describe_result, failed_runs, train_plan_lanes
    from paddy.vision.run import train_member, train_run

    choose_accum = _announced_chooser()  # accum "auto": the probe picks it, above the training layer
    say = functools.partial(print, flush=True)  # flushed: a log shows each step as it starts
    if args.plan or args.runs:
        results = train_plan_lanes(args.data, _plan(args), args.runs, lanes=args.lanes or "auto",
                                   choose_accum=choose_accum, sync_bn=args.sync_bn, fold=args.fold,
                                   say=say)
    elif args.lanes is not None:
        raise ConfigError("--lanes applies to a plan (--plan PLAN --runs DIR): one run trains in one process")
    elif (args.devices or 1) > 1:
        config = _config(args)
        if config.folds:
            raise ConfigError("--devices with --folds is not supported yet: train the folds one process each")
        results = [launch_distributed(args.data, config, args.out, args.devices, choose_accum=choose_accum,
                                      sync_bn=args.sync_bn)]
    else:
        config = _config(args)
        if config.folds:
            results = train_member(args.data, config, args.out, fold=args.fold, choose_accum=choose_accum,
                                   say=say)
        elif args.fold is not None:
            raise ConfigError("--fold I needs --folds K (the number of folds)")
        else:
            results = [train_run(args.data, config, args.out, choose_accum=choose_accum, say=say)]
    for result in results:
        print(describe_result(result))
    failed = failed_runs(results)
    if failed:  # the other lanes' runs are complete; a rerun resumes the failed ones and skips the rest
        print(f"{len(failed)} of {len(results)} runs failed ({', '.join(failed)}); rerun the same command to resume "
              "them", file=sys.stderr)
        return 1
    return 0


def _announced_chooser():
    """The probe's accum chooser, printing each choice and how it was made (measured on CUDA, else estimated);
    the probe is imported only when a run asks for accum "auto"."""

    def choose(data, config, budget_gb):
        from paddy.probe.run import ESTIMATED, choose_accum, uses_estimate

        accum = choose_accum(data, config, budget_gb)
        how = ESTIMATED if uses_estimate(config.device) else "measured"
        print(f"{config.run_name}: accum auto -> {accum} for a {budget_gb:g} GB budget ({how})", flush=True)
        return accum

    return choose


# Flags that define a run (argparse dests equal TrainConfig fields); plan members define their own.
RUN_FLAGS = ("arch", "size", "item_size", "item_method", "epochs", "lr", "bs", "accum", "finetune", "pretrained",
             "seed", "valid_pct", "split_seed", "split", "targets", "target_weights", "tta")
# Applied to every plan member: machine settings, and the folds.
OVERRIDES = {"device": "device", "workers": "num_workers", "checkpoint_every": "checkpoint_every", "folds": "folds"}
SPELLING = {"finetune": "--finetune/--no-finetune", "pretrained": "--no-pretrained"}


def _given(args, names):
    """{field: value} for the flags in `names` ({dest: field}) that were given (argparse defaults are None)."""
    return {field: getattr(args, dest) for dest, field in names.items() if getattr(args, dest) is not None}


def _plan(args):
    import dataclasses

    from paddy.core.errors import ConfigError
    from paddy.core.plan import load_plan

    given = [SPELLING.get(d, "--" + d.replace("_", "-")) for d in (*RUN_FLAGS, "out") if getattr(args, d) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot be combined with --plan: set them in the plan file "
                          "(only --device, --workers, --checkpoint-every and --folds apply to every member)")
    if not (args.plan and args.runs):
        raise ConfigError("a plan run takes --plan PLAN --runs DIR")
    plan = load_plan(args.plan)
    overrides = _given(args, OVERRIDES)
    devices = plan.devices if args.devices is None else args.devices
    return dataclasses.replace(plan, members=tuple(m.replace(**overrides) for m in plan.members), devices=devices)


def _config(args):
    from paddy.core.config import TrainConfig
    from paddy.core.errors import ConfigError

    if not (args.arch and args.out):
        raise ConfigError("one run needs --arch and --out (or use --plan PLAN --runs DIR)")
    return TrainConfig(**_given(args, {**{d: d for d in RUN_FLAGS}, **OVERRIDES}))
