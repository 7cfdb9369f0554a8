"""Benchmark: the data pipeline and a whole epoch from original JPEGs, the JPEG cache and the array cache.

One process, sources measured in turns each round (a busy machine slows them alike):
  .venv/bin/python bench/array_cache.py --n-train 600 --workdir /tmp/bench-array

- "cpu side": one pass over the training DataLoader without batch transforms (what DataLoader workers must keep up
  with while a GPU trains): original JPEGs (decode + Resize + collate), the JPEG cache (`paddy resize --max-size`),
  the array cache (`paddy resize --format array`: one memmap index per batch), at 0, 2 and 4 workers. Images/s by
  wall time after each pass's first batch (fastai forks its workers per epoch: on 10,407 images that start-up is
  amortised, on a small sample it would dominate); at 0 workers also by this process's CPU time (per core).
- "epoch": one fit epoch of a random-init timm model (train + valid) from each source, batch augmentation on the
  device given (here the CPU, so the model and the warp dominate).
- "ceiling" (--ceiling): the same number of training steps of the model alone on a random batch already on the
  device; the issue's GPU goal is the array cache's epoch within 10% of it (with --device cuda --workers 4).
- "parity": the same member trained from the JPEG cache and from the array cache, `--seeds` seeds, same split,
  `--parity-epochs` epochs; the validation error of each.
Item size 256x192 squish (the cache's aspect), batch size after augmentation `--size`.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from paddy.core.config import TrainConfig
from paddy.data import array_cache, array_loader, folder, loaders
from paddy.data.resize import resize_folder
from paddy.data.sample import make_sample
from paddy.vision.learner import build_learner
from paddy.vision.schedule import fit

ITEM = (256, 192)
SOURCES = ("original", "jpeg-cache", "array-cache")


def parse_args(argv=None):
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=600, help="synthetic 480x640 training images")
    parser.add_argument("--rounds", type=int, default=2, help="cpu-side rounds per source and worker count")
    parser.add_argument("--workers", default="0,2,4", help="DataLoader worker counts for the cpu side")
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--size", default="128,96", help="batch size after augmentation, HEIGHT,WIDTH")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--epoch-rounds", type=int, default=1, help="whole epochs per source (0: skip)")
    parser.add_argument("--epoch-workers", type=int, default=0, help="DataLoader workers for the whole epochs")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time the model alone on a random batch on the device (the GPU goal's ceiling)")
    parser.add_argument("--seeds", type=int, default=3, help="parity: seeds per source (0: skip)")
    parser.add_argument("--parity-epochs", type=int, default=5)
    parser.add_argument("--parity-size", default="96,72", help="parity: batch size after augmentation")
    parser.add_argument("--parity-bs", type=int, default=32)
    parser.add_argument("--parity-lr", type=float, default=1e-2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workdir", default=None, help="where the sample and caches go (default: a temp dir)")
    return parser.parse_args(argv)


def config(args, **changes):
    """The bench member: squish to 256x192 per item, augment to --size per batch, random init."""
    base = dict(arch=args.arch, item_size=ITEM, size=args.size, bs=args.bs, pretrained=False, finetune=False,
                epochs=1, lr=3e-3, num_workers=0, device=args.device, valid_pct=0.2, targets=("label",))
    return TrainConfig(**{**base, **changes})


def prepare(workdir, args):
    """The 480x640 sample, its JPEG cache (longest side 256) and its array cache (256x192); made once per workdir."""
    original = workdir / f"sample{args.n_train}"
    if not original.exists():
        start = time.perf_counter()
        make_sample(original, n_train=args.n_train, n_test=20, size=(480, 640))
        print(f"sample: {args.n_train} train images 480x640 in {time.perf_counter() - start:.1f} s")
    jpeg = resize_folder(original, workdir / f"jpeg{args.n_train}", max(ITEM), progress=False)
    print(f"jpeg cache: {jpeg.describe()}")
    array = array_cache.write_array_cache(original, workdir / f"array{args.n_train}", ITEM, "squish", progress=False)
    print(f"array cache: {array.describe()}")
    return {"original": original, "jpeg-cache": jpeg.out, "array-cache": array.out}


def dataloaders(source, path, member):
    """The training DataLoaders `paddy train` would build for this source."""
    if source == "array-cache":
        return array_loader.array_dataloaders(path, array_cache.cache_items(path, "train"), member)
    return loaders.image_dataloaders(folder.train_items(path), member)


def timed(work):
    """(wall seconds, this process's CPU seconds, result) of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def cpu_side(dls):
    """The training loader without batch transforms: reading, item work and collation only."""
    return dls.train.new(after_batch=[])


def one_pass(dl):
    """Iterate `dl` once; the number of images."""
    return sum(len(b[0]) for b in dl)


def steady_pass(dl):
    """Iterate `dl` once; (images, wall, CPU seconds) after its first batch, so the fork of each pass's workers
    (fastai starts them per epoch, amortised over 10,407 images on the real data) does not count."""
    if len(dl) < 2:  # one batch: nothing after the first, so time it whole
        wall, cpu, images = timed(lambda: one_pass(dl))
        return images, wall, cpu
    images, it = 0, iter(dl)
    next(it)
    wall, cpu = time.perf_counter(), time.process_time()
    for b in it:
        images += len(b[0])
    return images, time.perf_counter() - wall, time.process_time() - cpu


def rate(dl, min_seconds=1.0):
    """(images/s by wall time, images/s by this process's CPU time): passes (less their first batch) until
    `min_seconds` went by."""
    images, wall, cpu = 0, 0.0, 0.0
    while wall < min_seconds:
        n, w, c = steady_pass(dl)
        images, wall, cpu = images + n, wall + w, cpu + c
    return images / wall, images / max(cpu, 1e-9)


def measure_cpu_side(paths, args):
    """{(source, workers): best (wall images/s, cpu images/s)} over `--rounds` rounds taken in turns."""
    member = config(args)
    dls = {s: dataloaders(s, p, member) for s, p in paths.items()}
    counts = [int(w) for w in args.workers.split(",")]
    loaders_ = {(s, w): cpu_side(dls[s]).new(num_workers=w) for s in SOURCES for w in counts}
    for dl in loaders_.values():
        one_pass(dl)  # warm-up: page cache, imports, worker start-up code paths
    best = {}
    for _ in range(args.rounds):
        for key, dl in loaders_.items():
            wall, cpu = rate(dl)
            best[key] = (max(wall, best.get(key, (0, 0))[0]), max(cpu, best.get(key, (0, 0))[1]))
    return best


def report_cpu_side(best, args):
    """Print images/s per source and worker count, and the ratios array / JPEG cache and array / original."""
    counts = [int(w) for w in args.workers.split(",")]
    print(f"\ncpu side (read + item work + collate), item {ITEM[0]}x{ITEM[1]}, bs {args.bs}: images/s after each "
          f"pass's first batch (worker start-up excluded), best of {args.rounds}")
    print(f"{'workers':>8} " + " ".join(f"{s:>14}" for s in SOURCES) + "   array/jpeg-cache   array/original")
    for w in counts:
        row = [best[(s, w)][0] for s in SOURCES]
        ratios = f"   {row[2] / row[1]:15.1f}x {row[2] / row[0]:15.1f}x"
        print(f"{w:>8} " + " ".join(f"{r:14,.0f}" for r in row) + ratios)
    if 0 in counts:
        row = [best[(s, 0)][1] for s in SOURCES]
        print(f"{'0 (cpu)':>8} " + " ".join(f"{r:14,.0f}" for r in row) + f"   {row[2] / row[1]:15.1f}x "
              f"{row[2] / row[0]:15.1f}x   (images per CPU-second of this process: per core)")


def time_epoch(dls, member):
    """(wall, CPU) seconds of one whole fit epoch (train + valid) of a fresh random-init model."""
    learn = build_learner(dls, member)
    with learn.no_bar(), learn.no_logging():
        wall, cpu, _ = timed(lambda: learn.fit(1, member.lr))
    return wall, cpu


def measure_epochs(paths, args):
    """Print one whole epoch's wall and CPU seconds per source (best of --epoch-rounds, taken in turns)."""
    member = config(args, num_workers=args.epoch_workers)
    dls = {s: dataloaders(s, p, member) for s, p in paths.items()}
    times = {s: [] for s in SOURCES}
    for _ in range(args.epoch_rounds):
        for s in SOURCES:
            times[s].append(time_epoch(dls[s], member))
    print(f"\nepoch ({args.arch} random init, bs {args.bs}, size {member.size[0]}x{member.size[1]}, augmentation on "
          f"{args.device}, train {len(dls['original'].train_ds)} + valid {len(dls['original'].valid_ds)}):")
    base = min(w for w, _ in times["original"])
    for s in SOURCES:
        wall, cpu = min(w for w, _ in times[s]), min(c for _, c in times[s])
        print(f"  {s:12s} wall {wall:6.1f} s, cpu {cpu:6.1f} s, original/this {base / wall:4.2f}x")
    if args.ceiling:
        wall = time_ceiling(dls["array-cache"], member)
        best = min(w for w, _ in times["array-cache"])
        print(f"  {'ceiling':12s} wall {wall:6.1f} s (the model alone on one random batch already on {args.device}, "
              f"as many training steps; no validation), array-cache/ceiling {best / wall:4.2f}x")


def time_ceiling(dls, member):
    """Wall seconds of the training steps of one epoch on a random batch already on the device: what the model
    costs with a free data pipeline (the upper bound the issue's GPU goal is measured against)."""
    learn = build_learner(dls, member)
    model, device = learn.model.train(), dls.device
    xb = torch.rand(member.micro_bs, 3, *member.size, device=device)
    yb = torch.randint(0, len(dls.vocab), (member.micro_bs,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=member.lr)
    amp = torch.autocast("cuda", dtype=torch.float16, enabled=str(device).startswith("cuda"))

    def steps():
        for _ in range(len(dls.train)):
            with amp:
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return timed(steps)[0]


def valid_error(paths, source, member):
    """The validation error after training `member` from `source` (the kit's fit: one cycle, its seed)."""
    learn = build_learner(dataloaders(source, paths[source], member), member)
    with learn.no_bar(), learn.no_logging():
        fit(learn, member)
        return float(learn.validate()[1])


def measure_parity(paths, args):
    """Print the validation error per seed from the JPEG cache and the array cache, and their means."""
    errors = {"jpeg-cache": [], "array-cache": []}
    for seed in range(args.seeds):
        member = config(args, seed=seed, epochs=args.parity_epochs, size=args.parity_size, bs=args.parity_bs,
                        lr=args.parity_lr)
        for source in errors:
            start = time.perf_counter()
            errors[source].append(valid_error(paths, source, member))
            print(f"  parity seed {seed} {source:12s}: valid error {errors[source][-1]:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\nparity ({args.arch} random init, {args.parity_epochs} epochs, lr {member.lr}, bs {member.bs}, size "
          f"{member.size[0]}x{member.size[1]}, same split, seeds "
          f"0..{args.seeds - 1}):")
    for source, values in errors.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"  {source:12s} valid error " + " ".join(f"{v:.4f}" for v in values) +
              f"  mean {statistics.mean(values):.4f} sd {spread:.4f}")
    gap = statistics.mean(errors["array-cache"]) - statistics.mean(errors["jpeg-cache"])
    print(f"  array - jpeg cache: {gap:+.4f}")


def run(args, workdir):
    """Prepare the sources, then the cpu side, whole epochs and parity."""
    paths = prepare(workdir, args)
    report_cpu_side(measure_cpu_side(paths, args), args)
    if args.epoch_rounds:
        measure_epochs(paths, args)
    if args.seeds:
        measure_parity(paths, args)
    print("\nGPU rows (convnext_small 128 px, resnet26d 224 px vs the model on random tensors): not measured here, "
          "no GPU in this run" if not torch.cuda.is_available() else "")


def main(argv=None):
    """Run the benchmark in `--workdir` or a temporary folder."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        run(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
