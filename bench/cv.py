"""Do fitted blend weights beat equal weights and the best member? K-fold OOF predictions, nested CV, several seeds.

Makes a `paddy sample` competition folder, trains two members (resnet10t and convnext_atto from random init, small
sizes) with K-fold cross-validation through `paddy.vision.run.train_plan`, per seed (the seed sets both the folds and
the initial weights), then reads the members back as `paddy ensemble` does and prints, per seed and on average:
each member's OOF accuracy and log loss, equal weights, Caruana and hill-climbing blends scored nested (weights
fitted on K-1 folds, scored on the held-out fold) and the best member (chosen with hindsight on OOF accuracy).

    PYTHONPATH=. .venv/bin/python bench/cv.py [--n-train 1000] [--folds 5] [--seeds 0,1,2] [--epochs 3]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from paddy.core.config import TrainConfig
from paddy.core.plan import Plan
from paddy.core.runtime import torch_threads
from paddy.data.sample import make_sample
from paddy.ensemble.blend import oof_arrays, read_members, train_ids
from paddy.ensemble.fit import cross_validate
from paddy.vision.run import train_plan

METHODS = ("caruana", "hill")


def bench_plan(seed, folds, epochs, size):
    """Two members from random init sharing K folds; `seed` sets the folds and the initial weights."""
    shared = dict(size=(size, size), item_size=(2 * size, 3 * size // 2), epochs=epochs, bs=32, finetune=False,
                  pretrained=False, seed=seed, split_seed=seed, tta="none", num_workers=0, device="cpu", folds=folds)
    members = (TrainConfig(arch="resnet10t", lr=1e-2, name="resnet10t", **shared),
               TrainConfig(arch="convnext_atto", lr=3e-3, name="convnext_atto", **shared))
    return Plan(members=members, budget_gb=8.0, description=f"bench/cv.py seed {seed}")


def measure(data, runs):
    """Members, equal weights and nested fitted blends on the OOF rows of the run folders in `runs`."""
    members = read_members(sorted(p for p in Path(runs).iterdir() if p.is_dir()))
    member_probs, y, folds = oof_arrays(members, train_ids(data))
    reports = {m: cross_validate(member_probs, y, folds, m, "logloss") for m in METHODS}
    first = reports[METHODS[0]]
    best = first.best_member
    row = {"members": {m.name: {"accuracy": first.member_accuracy[i], "logloss": first.member_logloss[i]}
                       for i, m in enumerate(members)},
           "best": {"name": members[best].name, "accuracy": first.members[best].mean_accuracy,
                    "logloss": first.members[best].mean_logloss},
           "equal": {"accuracy": first.equal.mean_accuracy, "logloss": first.equal.mean_logloss}}
    for method, report in reports.items():
        row[method] = {"accuracy": report.nested.mean_accuracy, "std": report.nested.std_accuracy,
                       "logloss": report.nested.mean_logloss, "weights": [round(float(w), 3) for w in report.weights]}
    return row


def print_row(label, row):
    """One line: every member, equal, best and each fitted blend (accuracy % / log loss)."""
    cells = [f"{name} {v['accuracy'] * 100:.2f}/{v['logloss']:.3f}" for name, v in row["members"].items()]
    cells.append(f"equal {row['equal']['accuracy'] * 100:.2f}/{row['equal']['logloss']:.3f}")
    cells += [f"{m} {row[m]['accuracy'] * 100:.2f}/{row[m]['logloss']:.3f} w={row[m]['weights']}" for m in METHODS]
    cells.append(f"best member ({row['best']['name']}) {row['best']['accuracy'] * 100:.2f}/"
                 f"{row['best']['logloss']:.3f}")
    print(f"{label}: " + " | ".join(cells))


def summarise(rows):
    """Means over seeds and the goal checks, as printable lines."""
    lines = []
    for key in ("equal", "best", *METHODS):
        accuracy = np.mean([r[key]["accuracy"] for r in rows])
        loss = np.mean([r[key]["logloss"] for r in rows])
        lines.append(f"mean over {len(rows)} seeds, {key:8}: accuracy {accuracy * 100:.2f}%  log loss {loss:.4f}")
    for method in METHODS:
        below = [i for i, r in enumerate(rows) if r[method]["accuracy"] < r["best"]["accuracy"]]
        gain = np.mean([r["equal"]["logloss"] - r[method]["logloss"] for r in rows])
        lines.append(f"{method}: nested accuracy below the best member in {len(below)} of {len(rows)} seeds"
                     f"{' (seeds ' + ', '.join(map(str, below)) + ')' if below else ''}; log loss better than equal "
                     f"weights by {gain:+.4f} on average")
    return lines


def main():
    """Parse the options, make the sample, train and measure every seed, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench-cv", help="sample, runs and results go here (reused)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="training size in px (items are resized to 2x)")
    args = parser.parse_args()
    work = Path(args.workdir)
    data = work / "data"
    if not (data / "train.csv").is_file():
        make_sample(data, n_train=args.n_train, n_test=20, size=(96, 128), seed=123)
    rows, started = [], time.perf_counter()
    with torch_threads(1):  # tiny models on 2 busy cores: one thread wins (DESIGN.md, "Threads")
        for seed in (int(s) for s in args.seeds.split(",")):
            runs = work / f"seed-{seed}"
            train_plan(data, bench_plan(seed, args.folds, args.epochs, args.size), runs)
            rows.append(measure(data, runs))
            print_row(f"seed {seed}", rows[-1])
    lines = summarise(rows)
    print("\n".join(lines) + f"\n{time.perf_counter() - started:.0f} s in all, {args}")
    (work / "cv.json").write_text(json.dumps({"args": vars(args), "rows": rows, "summary": lines}, indent=2))


if __name__ == "__main__":
    main()
