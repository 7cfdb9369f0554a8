"""Benchmark: the kit's DotProductBias against fastai's collab_learner, same split, same schedule, one run.

Both train on the same seeded random 80/20 split of the embedded MovieLens latest-small with 50 factors,
fit_one_cycle(5, 5e-3, wd=0.1) and batch 64; the script prints seconds per epoch and validation MSE side by side
and the speed ratio. The kit's model runs with 1 torch thread (its default); fastai's runs with torch's default
thread count, as a user gets it, unless --fastai-threads says otherwise.

    .venv/bin/python bench/collab.py [--epochs 5] [--fastai-threads N] [--data ml-latest-small]
"""

import argparse
import time

import torch

from paddy.collab.data import load_ratings, split_frames
from paddy.collab.evaluate import evaluate_ratings
from paddy.collab.train import CollabConfig, fit_collab


def run(name, train, valid, config, titles):
    """Fit one model; returns a result row."""
    start = time.perf_counter()
    result = fit_collab(train, valid, config, titles, progress=False)
    seconds = [row["seconds"] for row in result.history]
    cpu = [row["cpu_seconds"] for row in result.history]
    score = evaluate_ratings(result.fitted, valid)
    return {"name": name, "threads": config.threads, "s_per_epoch": sum(seconds) / len(seconds),
            "cpu_s_per_epoch": sum(cpu) / len(cpu),
            "valid_mse": result.history[-1]["valid_loss"], "mse_cold_filled": score["mse"],
            "total_s": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fastai-threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    ratings = load_ratings(args.data)
    base = CollabConfig(kind="bias", factors=50, epochs=args.epochs, lr=5e-3, wd=0.1, bs=64, seed=42, threads=1)
    train, valid = split_frames(ratings, "random", base.valid_pct, base.seed)
    print(f"{ratings.source}: {len(train)} train / {len(valid)} valid ratings; fit_one_cycle({args.epochs}, 5e-3, "
          f"wd=0.1), bs 64, 50 factors; torch {torch.__version__}, {torch.get_num_threads()} default threads")
    rows = [run("kit DotProductBias", train, valid, base, ratings.titles),
            run("fastai collab_learner", train, valid, base.replace(kind="fastai", threads=args.fastai_threads),
                ratings.titles)]
    print(f"{'model':24s} {'threads':>7s} {'s/epoch':>8s} {'CPU s/epoch':>11s} {'valid MSE':>9s} "
          f"{'MSE (cold rows = mean)':>22s}")
    for row in rows:
        print(f"{row['name']:24s} {row['threads']:7d} {row['s_per_epoch']:8.2f} {row['cpu_s_per_epoch']:11.2f} "
              f"{row['valid_mse']:9.4f} {row['mse_cold_filled']:22.4f}")
    ours, theirs = rows
    print(f"speed ratio (fastai / kit): wall s/epoch {theirs['s_per_epoch'] / ours['s_per_epoch']:.1f}x, "
          f"CPU s/epoch {theirs['cpu_s_per_epoch'] / ours['cpu_s_per_epoch']:.1f}x; "
          f"valid MSE kit {ours['valid_mse']:.4f} vs fastai {theirs['valid_mse']:.4f} "
          f"({'no worse' if ours['valid_mse'] <= theirs['valid_mse'] else 'WORSE'})")


if __name__ == "__main__":
    main()
