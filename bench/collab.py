"""Benchmark: the kit's DotProductBias against fastai's collab_learner, same split, same schedule, one run.

All rows train on the same seeded random 80/20 split of the embedded MovieLens latest-small with 50 factors,
fit_one_cycle(5, 5e-3, wd=0.1) and batch 64, and the script prints seconds per epoch and validation MSE side by side
with the speed ratios:

- kit: `paddy.collab.train.fit_collab` (fastai's Learner without idle callback calls, fused Adam, tensor batches);
- fastai: fastai's own `collab_learner` over the TabularPandas pipeline, as a user gets it (torch's default thread
  count unless --fastai-threads says otherwise);
- bare PyTorch: the kit's model, batches and optimizer with the same one-cycle schedule in a plain loop and no
  fastai Learner at all. It shows what the Learner itself costs, and the floor for this model and batch size on
  this machine: no Learner-based loop can beat it.

    .venv/bin/python bench/collab.py [--epochs 5] [--threads 1] [--fastai-threads N] [--data ml-latest-small]
"""

import argparse
import time

import torch

from paddy.collab.data import load_ratings, split_frames
from paddy.collab.evaluate import evaluate_ratings
from paddy.collab.train import CollabConfig, fit_collab


def run(name, train, valid, config, titles):
    """Fit one model through `fit_collab`; returns a result row."""
    start = time.perf_counter()
    result = fit_collab(train, valid, config, titles, progress=False)
    seconds = [row["seconds"] for row in result.history]
    cpu = [row["cpu_seconds"] for row in result.history]
    score = evaluate_ratings(result.fitted, valid)
    return {"name": name, "threads": config.threads, "s_per_epoch": sum(seconds) / len(seconds),
            "cpu_s_per_epoch": sum(cpu) / len(cpu), "valid_mse": result.history[-1]["valid_loss"],
            "mse_cold_filled": score["mse"], "total_s": time.perf_counter() - start}


def bare_run(train, valid, config):
    """The kit's model, batches and FusedAdam under fit_one_cycle's lr and mom schedule, in a plain PyTorch loop."""
    import torch.nn.functional as F
    from fastai.callback.schedule import combined_cos

    from paddy import runtime
    from paddy.collab.loop import FusedAdam
    from paddy.collab.train import TensorLoader, fastai_wd, prepare

    start = time.perf_counter()
    prepared = prepare(train, valid, config)
    model = prepared.model
    train_dl = TensorLoader(*prepared.train_xy, bs=config.bs, shuffle=True, seed=config.seed)
    valid_dl = TensorLoader(*prepared.valid_xy, bs=max(config.bs, 1024))
    opt = FusedAdam(list(model.parameters()), decouple_wd=config.wd_mode == "decoupled")
    opt.set_hyper("wd", fastai_wd(config))
    # fit_one_cycle's defaults: pct_start 0.25, div 25, div_final 1e5, moms (0.95, 0.85, 0.95)
    lr_at = combined_cos(0.25, config.lr / 25, config.lr, config.lr / 1e5)
    mom_at = combined_cos(0.25, 0.95, 0.85, 0.95)
    total, done, seconds, cpu, valid_mse = config.epochs * len(train_dl), 0, [], [], None
    with runtime.torch_threads(config.threads):
        for _ in range(config.epochs):
            wall, process = time.perf_counter(), time.process_time()
            model.train()
            for x, y in train_dl:
                opt.set_hyper("lr", lr_at(done / total))
                opt.set_hyper("mom", mom_at(done / total))
                F.mse_loss(model(x), y).backward()
                opt.step()
                opt.zero_grad()
                done += 1
            model.eval()
            with torch.no_grad():
                squared = sum(F.mse_loss(model(x), y, reduction="sum").item() for x, y in valid_dl)
            valid_mse = squared / len(valid_dl.y)
            seconds.append(time.perf_counter() - wall)
            cpu.append(time.process_time() - process)
    return {"name": "bare PyTorch loop", "threads": config.threads, "s_per_epoch": sum(seconds) / len(seconds),
            "cpu_s_per_epoch": sum(cpu) / len(cpu), "valid_mse": valid_mse, "mse_cold_filled": float("nan"),
            "total_s": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml-latest-small", help="ml-latest-small (embedded) or a ratings path")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the kit and the bare loop")
    parser.add_argument("--fastai-threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for collab_learner (default: torch's default, as a user gets it)")
    args = parser.parse_args()
    ratings = load_ratings(args.data)
    base = CollabConfig(kind="bias", factors=50, epochs=args.epochs, lr=5e-3, wd=0.1, bs=64, seed=42,
                        threads=args.threads)
    train, valid = split_frames(ratings, "random", base.valid_pct, base.seed)
    print(f"{ratings.source}: {len(train)} train / {len(valid)} valid ratings; fit_one_cycle({args.epochs}, 5e-3, "
          f"wd=0.1), bs 64, 50 factors; torch {torch.__version__}, {torch.get_num_threads()} default threads")
    kit = run("kit DotProductBias", train, valid, base, ratings.titles)
    fastai = run("fastai collab_learner", train, valid, base.replace(kind="fastai", threads=args.fastai_threads),
                 ratings.titles)
    bare = bare_run(train, valid, base)
    print(f"{'model':24s} {'threads':>7s} {'s/epoch':>8s} {'CPU s/epoch':>11s} {'valid MSE':>9s} "
          f"{'MSE (cold rows = mean)':>22s}")
    for row in (kit, fastai, bare):
        print(f"{row['name']:24s} {row['threads']:7d} {row['s_per_epoch']:8.2f} {row['cpu_s_per_epoch']:11.2f} "
              f"{row['valid_mse']:9.4f} {row['mse_cold_filled']:22.4f}")
    print(f"speed ratio (fastai / kit): wall s/epoch {fastai['s_per_epoch'] / kit['s_per_epoch']:.1f}x, "
          f"CPU s/epoch {fastai['cpu_s_per_epoch'] / kit['cpu_s_per_epoch']:.1f}x; "
          f"valid MSE kit {kit['valid_mse']:.4f} vs fastai {fastai['valid_mse']:.4f} "
          f"({'no worse' if kit['valid_mse'] <= fastai['valid_mse'] else 'WORSE'})")
    print(f"floor (fastai / bare PyTorch loop): wall s/epoch {fastai['s_per_epoch'] / bare['s_per_epoch']:.1f}x; "
          f"the kit's Learner costs {kit['s_per_epoch'] / bare['s_per_epoch']:.2f}x the bare loop "
          f"(bare loop valid MSE {bare['valid_mse']:.4f})")


if __name__ == "__main__":
    main()
