"""Lanes and data-parallel on CPU, measured side by side in one run (wall seconds, the same tiny members).

    python bench/lanes_cpu.py [--epochs 2] [--out /tmp/lanes_bench]

1. two members one after the other (1 lane, in this process) vs two lanes (two processes);
2. one member in one process vs --devices 2 (two processes on gloo, the same global batch).
On a CPU machine this measures the machinery (process start-up, fastai import, gloo all-reduce), not a GPU's
speed-up: the multi-GPU speed-up needs GPUs.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from paddy.core.config import TrainConfig  # noqa: E402
from paddy.core.plan import Plan  # noqa: E402
from paddy.data.sample import make_sample  # noqa: E402
from paddy.vision.distributed import launch_distributed  # noqa: E402
from paddy.vision.lanes import train_plan_lanes  # noqa: E402
from paddy.vision.run import train_run  # noqa: E402


def timed(func, *args, **kwargs):
    """Seconds one call takes."""
    started = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - started


def main():
    """Measure and print the two comparisons."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="/tmp/lanes_bench")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the in-process runs (each lane and rank gets cores // N)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    data = make_sample(out / "data", n_train=240, n_test=16, size=(48, 64))
    member = TrainConfig(arch="resnet10t", size=64, item_size=(64, 48), bs=16, epochs=args.epochs, finetune=False,
                         pretrained=False, num_workers=0, device="cpu", tta="none")
    plan = Plan(members=(member.replace(name="a"), member.replace(name="b", seed=7)))
    print(f"{os.cpu_count()} CPU cores, {args.threads} torch thread(s) in this process; {len(plan.members)} members "
          f"of {args.epochs} epochs on 192 images")
    one_lane = timed(train_plan_lanes, data, plan, out / "seq", lanes=1)
    two_lanes = timed(train_plan_lanes, data, plan, out / "lanes", lanes=2)
    print(f"two members: one after the other {one_lane:.1f} s, two lanes {two_lanes:.1f} s "
          f"(ratio {one_lane / two_lanes:.2f})")
    alone = timed(train_run, data, member, out / "one")
    ddp = timed(launch_distributed, data, member, out / "ddp", devices=2)
    print(f"one member: one process {alone:.1f} s, --devices 2 {ddp:.1f} s (ratio {alone / ddp:.2f})")


if __name__ == "__main__":
    main()
