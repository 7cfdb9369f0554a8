"""What does the second target buy? Disease-only vs disease+variety, same arch, epochs, seed and split.

Makes a sample competition folder, trains both runs through `paddy.vision.run.train_run` on it, and prints the disease
error of each side by side (and the multi-target run's variety error), read back from the run folders' validation
probabilities, the same files the ensembler reads.

    .venv/bin/python bench/multitask.py [--n-train 300] [--epochs 4] [--arch resnet10t] [--seeds 1,2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from paddy.core import run_folder
from paddy.core.config import TrainConfig
from paddy.data.sample import make_sample
from paddy.vision.run import train_run


def error_rate(run, target):
    """Validation error of a finished run's `target` head, and the majority-class error, from its saved probs."""
    probs = run_folder.read_probs(run_folder.valid_probs_path(run, target))
    predicted = np.asarray(probs.vocab)[probs.probs.argmax(axis=1)]
    majority = max(probs.true.count(c) for c in set(probs.true)) / len(probs.true)
    return float(np.mean(predicted != np.asarray(probs.true))), 1.0 - majority


def bench_one(data, config, runs):
    """Train `config` into a fresh folder under `runs`; return (seconds, {target: (error, majority error)})."""
    out = Path(runs) / f"{'-'.join(config.targets)}-seed{config.seed}"
    start = time.perf_counter()
    train_run(data, config, out)
    seconds = time.perf_counter() - start
    return seconds, {t: error_rate(out, t) for t in config.targets}


def compare(data, base, seeds, weights, runs):
    """Train both variants per seed, print one row each and the mean; return the rows."""
    print(f"{'seed':>4}  {'disease-only':>12}  {'multi: disease':>14}  {'multi: variety':>14}  seconds single/multi")
    rows = []
    for seed in seeds:
        single_s, single = bench_one(data, base.replace(seed=seed), runs)
        multi_config = base.replace(seed=seed, targets=("label", "variety"), target_weights=weights)
        multi_s, multi = bench_one(data, multi_config, runs)
        rows.append((single["label"][0], multi["label"][0], multi["variety"][0]))
        errors = "  ".join(f"{e:>{w}.4f}" for e, w in zip(rows[-1], (12, 14, 14)))
        print(f"{seed:>4}  {errors}  {single_s:.0f}/{multi_s:.0f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':>4}  {mean[0]:>12.4f}  {mean[1]:>14.4f}  {mean[2]:>14.4f}")
    print(f"majority-class error on the validation split: disease {multi['label'][1]:.4f}, "
          f"variety {multi['variety'][1]:.4f}")
    return rows


def main():
    """Parse the options, make a sample folder, and compare the two variants on it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--weights", default="1,1", help="target weights of the multi-target run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 wins for tiny models on 2 cores)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_sample(Path(tmp) / "data", n_train=args.n_train, n_test=16, size=(48, 64), seed=1)
        base = TrainConfig(arch=args.arch, size=args.size, item_size=args.size, epochs=args.epochs, lr=args.lr,
                           bs=16, finetune=False, pretrained=False, tta="none", num_workers=0, device="cpu")
        print(f"{args.arch}, {args.epochs} epochs from random init, {args.n_train} sample images at {args.size} px, "
              f"same seed and split per row; multi-target weights {args.weights}")
        compare(data, base, [int(s) for s in args.seeds.split(",")], args.weights, tmp)


if __name__ == "__main__":
    main()
