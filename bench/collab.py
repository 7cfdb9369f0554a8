"""Benchmarks for paddy.collab: time-to-quality against fastai's collab_learner, and a MovieLens 100k model table.

`time` (default): on one seeded random 80/20 split per data set, fastai's own `collab_learner` under the book's
recipe (`fit_one_cycle(5, 5e-3, wd=0.1)`, bs 64, 50 factors, torch's default threads as a user gets it) sets the
target, its final validation MSE; the kit's default recipe (`CollabConfig()`, DotProductBias) is timed from its first
batch until its validation MSE is no worse than that target (epoch granularity: an epoch's time includes its
validation pass). The ratio is collab_learner's total training time over the kit's time to the target.

`table`: u1 RMSE and the mean over u1..u5 (MovieLens 100k's canonical base/test files) for each model under its
fast recipe, with training seconds, beside the published anchors. `tune`: a model's recipe candidates scored on a
validation part of u1.base only (10%, seeded), never on u1.test: how the recipes were chosen.

    .venv/bin/python bench/collab.py time [--data ml-latest-small /tmp/ml-100k]
    .venv/bin/python bench/collab.py table --ml100k /tmp/ml-100k [--splits u1 u2 u3 u4 u5] [--models dot bias ...]
    .venv/bin/python bench/collab.py tune --ml100k /tmp/ml-100k --model autorec
"""

import argparse
import json
import time

import torch

from paddy.collab.config import CollabConfig
from paddy.collab.data import load_ratings, random_split, split_frames
from paddy.collab.evaluate import evaluate_ratings
from paddy.collab.train import fit_collab

ANCHORS = {"GLocal-K": 0.8889, "IGMC": 0.905, "GC-MC": "0.905-0.910", "Surprise SVD (5-fold)": 0.934}
MODELS = ("dot", "bias", "nn", "autorec", "svdpp", "blend")
# Candidates tried on a validation part of u1.base (README has the scores); the fast recipes are the best of each.
TUNE = {
    "bias": [{"bs": 1024, "lr": 1e-2, "wd": 0.5, "epochs": 5}, {"bs": 512, "lr": 1e-2, "wd": 0.5, "epochs": 6},
             {"bs": 2048, "lr": 3e-2, "wd": 1.0, "epochs": 5}],
    "autorec": [{"lr": 3e-3, "wd": w, "epochs": e} for w, e in ((5, 40), (10, 40), (20, 60))],
    "svdpp": [{"bs": 4096, "lr": lr, "wd": w, "epochs": 15} for lr, w in ((1e-2, 1), (3e-2, 1), (1e-2, 2), (3e-2, 3))],
}


def timed_fit(train, valid, config, titles=None):
    """Fit and time one model: (FitResult, wall seconds, process CPU seconds)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fit_collab(train, valid, config, titles, progress=False)
    return result, time.perf_counter() - start, time.process_time() - cpu


def seconds_to(history, target, clock="seconds"):
    """Seconds (wall, or `clock` cpu_seconds) from the first batch until an epoch's validation MSE <= `target`."""
    elapsed = 0.0
    for row in history:
        elapsed += row[clock]
        if row["valid_loss"] <= target:
            return elapsed
    return None


def time_to_quality(data, fastai_threads):
    """One data set's row: collab_learner's book recipe against the kit's default recipe on the same split."""
    ratings = load_ratings(data)
    train, valid = split_frames(ratings, "random", 0.2, 42)
    book = CollabConfig(kind="fastai", recipe="book", threads=fastai_threads)
    theirs = timed_fit(train, valid, book, ratings.titles)[0]
    ours = timed_fit(train, valid, CollabConfig(), ratings.titles)[0]
    target = theirs.history[-1]["valid_loss"]
    their_seconds = sum(row["seconds"] for row in theirs.history)
    their_cpu = sum(row["cpu_seconds"] for row in theirs.history)
    reach, reach_cpu = seconds_to(ours.history, target), seconds_to(ours.history, target, "cpu_seconds")
    return {"data": ratings.source, "train": len(train), "valid": len(valid), "fastai_mse": target,
            "fastai_seconds": their_seconds, "fastai_cpu": their_cpu, "kit_seconds_to_target": reach,
            "kit_cpu_to_target": reach_cpu, "kit_mse": ours.history[-1]["valid_loss"],
            "kit_seconds": sum(row["seconds"] for row in ours.history),
            "ratio": their_seconds / reach if reach else None,
            "cpu_ratio": their_cpu / reach_cpu if reach_cpu else None}


def print_time(rows):
    """The time-to-quality table."""
    print("| data | collab_learner (book) final MSE | its training s (CPU s) | kit default: s to that MSE (CPU s) "
          "| kit final MSE | kit training s | ratio wall (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        reach = "never" if r["kit_seconds_to_target"] is None else \
            f"{r['kit_seconds_to_target']:.2f} ({r['kit_cpu_to_target']:.2f})"
        ratio = "-" if r["ratio"] is None else f"**{r['ratio']:.0f}x** ({r['cpu_ratio']:.0f}x)"
        print(f"| {r['data']} ({r['train']}/{r['valid']}) | {r['fastai_mse']:.4f} | {r['fastai_seconds']:.1f} "
              f"({r['fastai_cpu']:.1f}) | {reach} | {r['kit_mse']:.4f} | {r['kit_seconds']:.2f} | {ratio} |")


def model_table(folder, splits, kinds):
    """Test RMSE and training seconds per model and canonical split (fast recipes)."""
    ratings = load_ratings(folder)
    rows = {}
    for split in splits:  # u1 for every model first: the headline figures arrive early
        train, test = split_frames(ratings, split)
        for kind in kinds:
            result, seconds, cpu = timed_fit(train, test, CollabConfig(kind=kind), ratings.titles)
            rows[kind, split] = (evaluate_ratings(result.fitted, test)["rmse"], seconds, cpu)
            print(f"{kind} {split}: RMSE {rows[kind, split][0]:.4f} in {seconds:.1f} s ({cpu:.1f} CPU s) "
                  + (json.dumps(result.info) if result.info else ""), flush=True)
    return rows


def print_table(rows, splits, kinds):
    """Markdown: u1 RMSE, mean over the splits, seconds."""
    print(f"| model | u1 RMSE | mean RMSE {splits[0]}..{splits[-1]} | training wall s (u1) | CPU s (u1) |")
    print("| --- | --- | --- | --- | --- |")
    for kind in kinds:
        rmses = [rows[kind, split][0] for split in splits]
        print(f"| {kind} | {rows[kind, splits[0]][0]:.4f} | {sum(rmses) / len(rmses):.4f} | "
              f"{rows[kind, splits[0]][1]:.1f} | {rows[kind, splits[0]][2]:.1f} |")
    for name, value in ANCHORS.items():
        print(f"| {name} (published) | {value} | | | |")


def tune(folder, kind):
    """Each candidate recipe's RMSE on a seeded 10% validation part of u1.base (u1.test never read)."""
    base, _ = split_frames(load_ratings(folder), "u1")
    inner, held = random_split(len(base), 0.1, 7)
    train, valid = base.iloc[inner].reset_index(drop=True), base.iloc[held].reset_index(drop=True)
    for values in TUNE[kind]:
        result, seconds, _ = timed_fit(train, valid, CollabConfig(kind=kind, **values))
        print(f"{kind} {values}: validation RMSE {evaluate_ratings(result.fitted, valid)['rmse']:.4f} "
              f"in {seconds:.1f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="time", choices=("time", "table", "tune"))
    parser.add_argument("--data", nargs="+", default=["ml-latest-small"], help="time: data sets (names or paths)")
    parser.add_argument("--ml100k", help="table, tune: an unpacked MovieLens 100k folder (never committed)")
    parser.add_argument("--splits", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--model", default="autorec", choices=sorted(TUNE))
    parser.add_argument("--fastai-threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for collab_learner (default: torch's default, as a user gets it)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads; kit trains on 1 thread")
    if args.mode == "time":
        rows = []
        for data in args.data:
            rows.append(time_to_quality(data, args.fastai_threads))
            print(json.dumps(rows[-1]), flush=True)  # each data set as it finishes: a long run under load
        print_time(rows)
    elif args.mode == "table":
        print_table(model_table(args.ml100k, args.splits, args.models), args.splits, args.models)
    else:
        tune(args.ml100k, args.model)


if __name__ == "__main__":
    main()
