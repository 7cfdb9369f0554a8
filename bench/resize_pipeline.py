"""Benchmark: the data pipeline (and, for the record, a whole epoch) from original JPEGs vs the resized cache.

Run in one process, alternating original / cache each round so that a busy machine slows both alike:
  .venv/bin/python bench/resize_pipeline.py --n-train 300 --max-size 256

"Pipeline" is one pass over the training DataLoader of `paddy.data.loaders.image_dataloaders`: JPEG decode, item
transform (Resize), collation and batch transforms (aug_transforms), no model; "cpu side" is the same pass without
the batch transforms (on a GPU box those run on the GPU, and the rest is what the CPU workers must keep up with).
"Epoch" is one `fit` epoch of a tiny timm model built by `paddy.vision.learner.build_learner` (pretrained=False),
validation included. Prints the best of `--rounds` wall and CPU times per source and the ratios original / cache.
"""

import argparse
import tempfile
import time
from pathlib import Path

from paddy.core.config import TrainConfig
from paddy.data.folder import train_items
from paddy.data.loaders import image_dataloaders
from paddy.data.resize import resize_folder
from paddy.data.sample import make_sample
from paddy.vision.learner import build_learner


def parse_args(argv=None):
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=300, help="synthetic 480x640 training images")
    parser.add_argument("--max-size", type=int, default=256, help="longest side of the cache")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pipeline rounds per source")
    parser.add_argument("--epoch-rounds", type=int, default=1, help="alternating whole-epoch rounds (0: skip)")
    parser.add_argument("--arch", default="resnet10t", help="timm model for the whole-epoch timing")
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0: measure in-process)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a shared 2-core machine a second thread mostly waits)")
    parser.add_argument("--workdir", default=None, help="where the sample and cache go (default: a temp dir)")
    return parser.parse_args(argv)


def bench_config(args):
    """The notebooks' small-image setup: squish to 256x192 per item, augment to 128x96 per batch."""
    return TrainConfig(arch=args.arch, item_size=(256, 192), size=(128, 96), bs=args.bs, pretrained=False,
                       finetune=False, epochs=1, num_workers=args.num_workers, device=args.device, valid_pct=0.2)


def timed(work):
    """Run `work()`; return (wall seconds, this process's CPU seconds, its result).

    CPU seconds count the work this process did, not the time it waited for a core that other jobs held: on a
    shared machine they are the steadier measure (with --num-workers 0 and --threads 1 all the work is here).
    """
    import torch

    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def one_pass(dl):
    """Iterate DataLoader `dl` once (batches land on its device); return the number of images."""
    return sum(len(xb) for xb, _ in dl)


def time_epoch(dls, config):
    """(wall, CPU) seconds for one whole training epoch (with validation) of a fresh tiny model."""
    learn = build_learner(dls, config)
    with learn.no_bar(), learn.no_logging():
        wall, cpu, _ = timed(lambda: learn.fit(1, 1e-3))
    return wall, cpu


def prepare(workdir, args):
    """The 480x640 sample and its cache (made once, reused by later runs); the seconds the resize took."""
    original, cache = workdir / f"sample{args.n_train}", workdir / f"cache{args.n_train}_{args.max_size}"
    if not original.exists():
        start = time.perf_counter()
        make_sample(original, n_train=args.n_train, n_test=10, size=(480, 640))
        print(f"sample: {args.n_train} train images 480x640 in {time.perf_counter() - start:.1f} s")
    summary = resize_folder(original, cache, args.max_size, workers=None, progress=False)
    print(f"resize: {summary.describe()}")
    return original, cache, summary.seconds


def alternate(sources, measure, rounds):
    """{source: [(wall, cpu), ...]}: `measure(source)` called in turns, source after source, `rounds` times."""
    times = {k: [] for k in sources}
    for _ in range(rounds):
        for k in sources:
            times[k].append(measure(k))
    return times


def report(what, times, note=""):
    """Print each source's best wall and CPU seconds, then the ratios original / cache."""
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    for k, (wall, cpu) in best.items():
        print(f"{what} {k:8s}: wall {wall:7.2f} s, cpu {cpu:7.2f} s (best of {len(times[k])}){note}")
    (wall_o, cpu_o), (wall_c, cpu_c) = best["original"], best["cache"]
    print(f"{what} ratio original/cache: wall {wall_o / wall_c:.2f}x, cpu {cpu_o / cpu_c:.2f}x")


def run(args, workdir):
    """Alternate original and cache: pipeline passes, then whole epochs; print times and ratios."""
    original, cache, _ = prepare(workdir, args)
    config = bench_config(args)
    sources = {"original": original, "cache": cache}
    dls = {k: image_dataloaders(train_items(v), config) for k, v in sources.items()}
    # The CPU side: what DataLoader workers do while a GPU trains (decode, item transforms, collation).
    cpu_side = {k: dls[k].train.new(after_batch=[]) for k in sources}
    n = {k: one_pass(dls[k].train) + one_pass(cpu_side[k]) for k in sources}  # warm-up: page cache, imports
    side = alternate(sources, lambda k: timed(lambda: one_pass(cpu_side[k]))[:2], args.rounds)
    report("cpu side", side, f", {n['cache'] // 2} images, decode + {config.item_size} item resize + collate")
    pipe = alternate(sources, lambda k: timed(lambda: one_pass(dls[k].train))[:2], args.rounds)
    report("pipeline", pipe, f", the same + {config.size} batch augmentation on {config.device}")
    if args.epoch_rounds:
        epoch = alternate(sources, lambda k: time_epoch(dls[k], config), args.epoch_rounds)
        report("epoch   ", epoch, f", {args.arch} bs {args.bs}, train + valid")


def main(argv=None):
    """Run the benchmark in `--workdir` or a temporary folder."""
    import torch

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
