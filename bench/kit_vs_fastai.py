"""The kit's own cost: `paddy train` against the plain fastai script it replaces, same data, same recipe, one run.

Recipe (issue 18): resnet10t, random init, item 96 squish, size 64, 8 epochs, lr 3e-3, bs 64, no TTA. The plain
script is the Road to the Top notebook's code (ImageDataLoaders.from_folder, vision_learner, fit_one_cycle,
get_preds on the validation and test images, a submission CSV). The kit side trains the same recipe through
`paddy.vision.run.train_run` (in this process, like the plain function) and through the `paddy train` command
(a fresh process, like the plain script run as `python plain.py`, so both pay interpreter start and imports).
Rounds alternate the sides; medians are printed with kit / plain ratios. Goal: kit within 10% (ratio <= 1.10).

    .venv/bin/python bench/kit_vs_fastai.py [--n-train 600] [--n-test 120] [--rounds 1] [--epochs 8]
"""

import argparse
import json
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


def one_round(data: Path, work: Path, index: int, epochs: int, workers: int) -> dict:
    """Each side once, alternating which goes first per round; seconds per side."""
    sides = {
        "plain fastai, in process": lambda out: plain_fastai(data, out, epochs, workers),
        "kit train_run, in process": lambda out: kit_library(data, out, epochs, workers),
        "plain fastai script": lambda out: timed_process(plain_script_command(data, out, epochs, workers)),
        "paddy train (CLI)": lambda out: timed_process(kit_cli_command(data, out, epochs, workers)),
    }
    names = list(sides) if index % 2 == 0 else list(sides)[::-1]
    times = {}
    for name in names:
        times[name] = sides[name](work / f"round{index}-{name.split()[0]}-{len(times)}")
        print(f"  round {index + 1}: {name}: {times[name]:.1f} s", flush=True)
    return times


def report(rounds: list) -> dict:
    """Median seconds per side and the two kit / plain ratios."""
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    ratios = {"in process": medians["kit train_run, in process"] / medians["plain fastai, in process"],
              "as a command": medians["paddy train (CLI)"] / medians["plain fastai script"]}
    print(f"\nmedian of {len(rounds)} round(s):")
    for name, seconds in medians.items():
        print(f"  {name:28s} {seconds:7.1f} s")
    for name, ratio in ratios.items():
        print(f"kit / plain, {name}: {ratio:.3f} ({'within' if ratio <= 1.10 else 'over'} the 10% goal)")
    return {"medians_s": medians, "ratios": ratios}


def main(argv=None):
    """Parse options; make the sample folder; run the rounds; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=120)
    parser.add_argument("--image-size", default="480x640", help="WIDTHxHEIGHT of the sample's JPEGs")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both sides (0: main process)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.plain:
        plain_fastai(Path(args.plain[0]), Path(args.plain[1]), args.epochs, args.workers)
        return 0
    from paddy.data.sample import make_sample

    with tempfile.TemporaryDirectory(prefix="paddy-bench-") as tmp:
        data = make_sample(Path(tmp) / "data", n_train=args.n_train, n_test=args.n_test, size=args.image_size)
        print(f"{args.n_train} train / {args.n_test} test images {args.image_size}; {json.dumps(RECIPE)}, "
              f"{args.epochs} epochs, workers {args.workers}", flush=True)
        rounds = [one_round(data, Path(tmp), i, args.epochs, args.workers) for i in range(args.rounds)]
    figures = report(rounds)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
