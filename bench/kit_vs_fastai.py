"""The kit's own cost: `paddy train` against the plain fastai script it replaces, same data, same recipe, one run.

Recipe (issue 18): resnet10t, random init, item 96 squish, size 64, 8 epochs, lr 3e-3, bs 64, no TTA. The plain
script is the Road to the Top notebook's code (ImageDataLoaders.from_folder, vision_learner, fit_one_cycle,
get_preds on the validation and test images, a submission CSV). The kit side trains the same recipe through
`paddy.vision.run.train_run` (in this process, like the plain function) and through the `paddy train` command
(a fresh process, like the plain script run as `python plain.py`, so both pay interpreter start and imports).
The folder is checked first, as `paddy check` would be on a user's day. Rounds alternate the order of the sides;
medians of wall and CPU time (this process's and its children's: steadier when other jobs share the machine) are
printed with kit / plain ratios. Goal: kit within 10% (ratio <= 1.10). `--steps` also times, alone,
each step the kit adds (imports, the check when nothing is remembered, a checkpoint, plot, export, CSVs).

    .venv/bin/python bench/kit_vs_fastai.py [--n-train 96] [--n-test 24] [--rounds 3] [--epochs 8] [--steps]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = {"arch": "resnet10t", "item": 96, "size": 64, "lr": 3e-3, "bs": 64}


def plain_fastai(data: Path, out: Path, epochs: int, workers: int) -> float:
    """The plain fastai recipe, start to submission CSV; return its wall time in seconds."""
    start = time.perf_counter()
    from fastai.vision.all import (
        ImageDataLoaders,
        Resize,
        ResizeMethod,
        aug_transforms,
        error_rate,
        get_image_files,
        set_seed,
        vision_learner,
    )

    set_seed(42)
    dls = ImageDataLoaders.from_folder(data / "train_images", valid_pct=0.2, seed=42, bs=RECIPE["bs"],
                                       item_tfms=Resize(RECIPE["item"], method=ResizeMethod.Squish),
                                       batch_tfms=aug_transforms(size=RECIPE["size"], min_scale=0.75),
                                       num_workers=workers)
    learn = vision_learner(dls, RECIPE["arch"], pretrained=False, metrics=error_rate)
    learn.fit_one_cycle(epochs, RECIPE["lr"])
    learn.get_preds(dl=dls.valid)
    files = get_image_files(data / "test_images").sorted()
    probs, _ = learn.get_preds(dl=dls.test_dl(files))
    out.mkdir(parents=True, exist_ok=True)
    labels = [dls.vocab[i] for i in probs.argmax(dim=1)]
    (out / "submission.csv").write_text("image_id,label\n" + "".join(f"{f.name},{x}\n" for f, x in zip(files, labels)))
    return time.perf_counter() - start


def kit_config(epochs: int, workers: int):
    """The same recipe as a TrainConfig."""
    from paddy.core.config import TrainConfig

    return TrainConfig(arch=RECIPE["arch"], pretrained=False, item_size=RECIPE["item"], item_method="squish",
                       size=RECIPE["size"], epochs=epochs, lr=RECIPE["lr"], bs=RECIPE["bs"], tta="none",
                       num_workers=workers, device="cpu")


def kit_library(data: Path, out: Path, epochs: int, workers: int) -> float:
    """`train_run` in this process; return its wall time."""
    start = time.perf_counter()
    from paddy.vision.run import train_run

    train_run(data, kit_config(epochs, workers), out)
    return time.perf_counter() - start


def timed_process(command: list) -> float:
    """Wall time of a fresh process running `command` (output discarded, failure raised)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def kit_cli_command(data: Path, out: Path, epochs: int, workers: int) -> list:
    """`paddy train` with the recipe's flags."""
    return [sys.executable, "-m", "paddy.cli.main", "train", str(data), "--arch", RECIPE["arch"], "--no-pretrained",
            "--item-size", str(RECIPE["item"]), "--item-method", "squish", "--size", str(RECIPE["size"]),
            "--epochs", str(epochs), "--lr", str(RECIPE["lr"]), "--bs", str(RECIPE["bs"]), "--tta", "none",
            "--workers", str(workers), "--device", "cpu", "--out", str(out)]


def plain_script_command(data: Path, out: Path, epochs: int, workers: int) -> list:
    """This file run as the plain script (`--plain DATA OUT`): only fastai is imported."""
    return [sys.executable, __file__, "--plain", str(data), str(out), "--epochs", str(epochs),
            "--workers", str(workers)]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: steadier than wall time on a shared machine."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def one_round(data: Path, work: Path, index: int, epochs: int, workers: int) -> dict:
    """Each side once, alternating which goes first per round; {side: {"wall": s, "cpu": s}}."""
    sides = {
        "plain fastai, in process": lambda out: plain_fastai(data, out, epochs, workers),
        "kit train_run, in process": lambda out: kit_library(data, out, epochs, workers),
        "plain fastai script": lambda out: timed_process(plain_script_command(data, out, epochs, workers)),
        "paddy train (CLI)": lambda out: timed_process(kit_cli_command(data, out, epochs, workers)),
    }
    names = list(sides) if index % 2 == 0 else list(sides)[::-1]
    times = {}
    for name in names:
        cpu = cpu_seconds()
        wall = sides[name](work / f"round{index}-{name.split()[0]}-{len(times)}")
        times[name] = {"wall": wall, "cpu": cpu_seconds() - cpu}
        print(f"  round {index + 1}: {name}: {wall:.1f} s wall, {times[name]['cpu']:.1f} s CPU", flush=True)
    return times


def import_seconds(module: str) -> float:
    """Wall time of a fresh interpreter importing `module`."""
    return timed_process([sys.executable, "-c", f"import {module}"])


def clock(step, *args) -> float:
    """Seconds `step(*args)` takes."""
    start = time.perf_counter()
    step(*args)
    return time.perf_counter() - start


def kit_steps(data: Path, work: Path, epochs: int, workers: int) -> dict:
    """Seconds of each step the kit adds to the plain recipe, measured alone (a trained-for-one-batch learner)."""
    from paddy.core import run_folder
    from paddy.data.check import require_valid
    from paddy.data.folder import test_items, train_items
    from paddy.data.loaders import image_dataloaders
    from paddy.vision.checkpoint import Journal
    from paddy.vision.history import plot_metrics
    from paddy.vision.learner import build_learner

    config = kit_config(1, workers)
    items = train_items(data)
    learn = build_learner(image_dataloaders(items.head(config.bs + 20), config), config)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)  # one step: Adam's moments exist, so the checkpoint has its full size
    learn.path, learn.model_dir = work / "steps", run_folder.CHECKPOINTS
    rows = [{"epoch": e, "phase": "train", "phase_epoch": e, "train_loss": 1.0 / (e + 1), "valid_loss": 1.0,
             "error_rate": 0.5, "seconds": 1.0} for e in range(epochs)]
    probs, n_test = [[0.1] * 10] * len(items), len(test_items(data))
    vocab = [f"c{i}" for i in range(10)]
    return {
        "imports: paddy.vision.run minus fastai.vision.all": import_seconds("paddy.vision.run")
        - import_seconds("fastai.vision.all"),
        "check (every image decoded)": clock(require_valid, data, None, False),
        "one checkpoint (model + Adam + states)": clock(Journal(work / "steps").save, learn, 0, "train", 0),
        "metrics plot": clock(plot_metrics, rows, work / "steps" / "metrics.png"),
        "export model.pkl": clock(learn.export, work / "steps" / "model.pkl"),
        "probability CSVs": clock(lambda: (run_folder.write_probs(work / "steps" / "v.csv", items["image_id"],
                                                                  probs, vocab),
                                           run_folder.write_probs(work / "steps" / "t.csv", range(n_test),
                                                                  probs[:n_test], vocab))),
    }


def report(rounds: list) -> dict:
    """Median wall and CPU seconds per side, and the kit / plain ratios in process and as a command."""
    pairs = {"in process": ("kit train_run, in process", "plain fastai, in process"),
             "as a command": ("paddy train (CLI)", "plain fastai script")}
    medians = {kind: {name: statistics.median(r[name][kind] for r in rounds) for name in rounds[0]}
               for kind in ("wall", "cpu")}
    print(f"\nmedian of {len(rounds)} round(s):          wall     CPU")
    for name in rounds[0]:
        print(f"  {name:28s} {medians['wall'][name]:7.1f} s {medians['cpu'][name]:7.1f} s")
    ratios = {f"{pair} ({kind})": medians[kind][kit] / medians[kind][plain]
              for pair, (kit, plain) in pairs.items() for kind in ("wall", "cpu")}
    for name, ratio in ratios.items():
        print(f"kit / plain, {name}: {ratio:.3f} ({'within' if ratio <= 1.10 else 'over'} the 10% goal)")
    return {"medians_s": medians, "ratios": ratios}


def main(argv=None):
    """Parse options; make the sample folder; run the rounds; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument("--n-test", type=int, default=24)
    parser.add_argument("--image-size", default="480x640", help="WIDTHxHEIGHT of the sample's JPEGs")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both sides (0: main process)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both sides (1: steadier on a shared machine; 0: torch's default)")
    parser.add_argument("--steps", action="store_true", help="also time each step the kit adds, alone")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:  # the subprocesses read it at start, like torch.set_num_threads here
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    if args.plain:
        plain_fastai(Path(args.plain[0]), Path(args.plain[1]), args.epochs, args.workers)
        return 0
    from paddy.data.sample import make_sample
    from paddy.data.verdict import check_and_remember

    with tempfile.TemporaryDirectory(prefix="paddy-bench-") as tmp:
        data = make_sample(Path(tmp) / "data", n_train=args.n_train, n_test=args.n_test, size=args.image_size)
        # As a user's day runs `paddy check DATA` first: train then finds its clean verdict (the steps table shows
        # what a check costs when it has none). In-process sides compare work, not imports: import both first.
        check_and_remember(data, progress=False)
        import fastai.vision.all  # noqa: F401

        import paddy.vision.run  # noqa: F401
        print(f"{args.n_train} train / {args.n_test} test images {args.image_size}; {json.dumps(RECIPE)}, "
              f"{args.epochs} epochs, workers {args.workers}, threads {args.threads or 'default'}", flush=True)
        rounds = [one_round(data, Path(tmp), i, args.epochs, args.workers) for i in range(args.rounds)]
        steps = kit_steps(data, Path(tmp), args.epochs, args.workers) if args.steps else {}
    figures = report(rounds)
    if steps:
        print("\nsteps the kit adds, each timed alone:")
        for name, seconds in steps.items():
            print(f"  {name:50s} {seconds:6.2f} s")
        figures["steps_s"] = steps
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
