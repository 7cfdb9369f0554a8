"""What does the second target buy? Disease-only vs disease+variety, same arch, epochs, seed and split.

Makes a sample competition folder, trains both runs through `paddy.train.train_run` on it, and prints the disease
error of each side by side (and the multi-target run's variety error), read back from the run folders' validation
probabilities, the same files the ensembler reads.

    .venv/bin/python bench/multitask.py [--n-train 400] [--epochs 4] [--arch resnet10t] [--seeds 1,2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from paddy import run_folder
from paddy.config import TrainConfig


def error_rate(run, target):
    """Validation error of a finished run's `target` head, from its saved probabilities."""
    probs = run_folder.read_probs(run_folder.valid_probs_path(run, target))
    predicted = np.asarray(probs.vocab)[probs.probs.argmax(axis=1)]
    return float(np.mean(predicted != np.asarray(probs.true)))


def bench_one(data, config, runs):
    """Train `config` into a fresh folder under `runs`; return (seconds, {target: error})."""
    from paddy.train import train_run

    out = Path(runs) / f"{'-'.join(config.targets)}-seed{config.seed}"
    start = time.perf_counter()
    train_run(data, config, out)
    seconds = time.perf_counter() - start
    return seconds, {t: error_rate(out, t) for t in config.targets}


def main():
    """Run both variants for each seed and print the error rates side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--weights", default="1,1", help="target weights of the multi-target run")
    args = parser.parse_args()

    import torch

    from paddy.sample import make_sample

    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_sample(Path(tmp) / "data", n_train=args.n_train, n_test=16, size=(48, 64), seed=0)
        base = TrainConfig(arch=args.arch, size=args.size, item_size=args.size, epochs=args.epochs, lr=3e-3, bs=32,
                           finetune=False, pretrained=False, tta="none", num_workers=0, device="cpu")
        print(f"{args.arch}, {args.epochs} epochs, {args.n_train} images at {args.size} px, weights {args.weights}")
        print(f"{'seed':>4}  {'disease-only':>12}  {'multi: disease':>14}  {'multi: variety':>14}  seconds (single/multi)")
        rows = []
        for seed in seeds:
            single_s, single = bench_one(data, base.replace(seed=seed), tmp)
            multi_config = base.replace(seed=seed, targets=("label", "variety"), target_weights=args.weights)
            multi_s, multi = bench_one(data, multi_config, tmp)
            rows.append((single["label"], multi["label"], multi["variety"]))
            print(f"{seed:>4}  {single['label']:>12.4f}  {multi['label']:>14.4f}  {multi['variety']:>14.4f}"
                  f"  {single_s:.1f}/{multi_s:.1f}")
        mean = np.mean(rows, axis=0)
        print(f"{'mean':>4}  {mean[0]:>12.4f}  {mean[1]:>14.4f}  {mean[2]:>14.4f}")
        print(f"chance (uniform): disease {1 - 1 / 10:.2f}, variety {1 - 1 / 10:.2f}")


if __name__ == "__main__":
    main()
