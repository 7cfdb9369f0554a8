"""GPU check: peak memory and throughput of the plan's real architectures, against the notebooks' figures.

On CUDA: synthetic 480x640 data (paddy.sample), every distinct (arch, size) of plans/road-to-the-top.toml with
random weights, fp16 and a 16 GB budget (accum 1, 2, 4, ... until the process total fits), then convnext_small at
128 px with accum 1, 2 and 4 and a few batches more for throughput. Each model runs in its own fresh subprocess
and its own try: a failure is recorded, not fatal. Results (JSON and markdown) are rewritten after every model,
so a timeout still leaves data. Built to finish in under 8 minutes on one H200 (--time-limit stops starting models).

    python bench/gpu_check.py --out bench/results/h200          # on a CUDA machine
    python bench/gpu_check.py --cpu-smoke --out /tmp/gpu_check  # the same flow on CPU with tiny archs
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from paddy.core import atomic  # noqa: E402
from paddy.core.config import TrainConfig  # noqa: E402
from paddy.core.errors import PaddyError  # noqa: E402
from paddy.core.plan import load_plan  # noqa: E402
from paddy.data.sample import make_sample  # noqa: E402
from paddy.probe.report import format_mb, markdown_table  # noqa: E402
from paddy.probe.search import ProbeTimeout, TryResult, accum_candidates, probe_config  # noqa: E402
from paddy.probe.worker import TryRequest, search_in_subprocess  # noqa: E402

# The notebooks' process totals (24 GB card, fp16, one epoch): (arch, size, accum) -> MB.
NOTEBOOK_MB = {
    ("convnext_small", "128x128", 1): 5173,
    ("convnext_small", "128x128", 2): 4069,
    ("convnext_small", "128x128", 4): 3513,
    ("convnext_large", "224x224", 2): 12191,
    ("vit_large_patch16_224", "224x224", 2): 16251,
    ("swinv2_large_window12_192", "192x192", 2): 14373,
    ("swin_large_patch4_window7_224", "224x224", 2): 12773,
}
FALLBACK_ARCHS = (("convnext_large_in22k", 224), ("convnext_large_in22k", (320, 224)),
                  ("vit_large_patch16_224", 224), ("swinv2_large_window12_192_22k", 192),
                  ("swin_large_patch4_window7_224", 224))
SMOKE_ARCHS = (("resnet10t", 32),)


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--cpu-smoke", action="store_true", help="CPU, tiny archs and images: the flow in minutes")
    parser.add_argument("--plan", default="road-to-the-top", help="plan whose archs to probe (default road-to-the-top)")
    parser.add_argument("--budget-gb", type=float, default=16.0, help="memory budget (default 16)")
    parser.add_argument("--n-train", type=int, default=None, help="synthetic training images (default 300; smoke 120)")
    parser.add_argument("--throughput-images", type=int, default=None,
                        help="images per convnext_small try, repeated from the smallest class (default 400; smoke 64)")
    parser.add_argument("--time-limit", type=float, default=420.0,
                        help="seconds after which no new model starts (default 420, inside the 8-minute target)")
    parser.add_argument("--only", default="", help="comma-separated name parts: probe only the models matching one")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers (default fastai's)")
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (120 if args.cpu_smoke else 300)
    args.throughput_images = args.throughput_images or (64 if args.cpu_smoke else 400)
    return args


def notebook_key(arch, size, accum):
    """The NOTEBOOK_MB key of a try: the arch without its pretrained tag or in22k suffix."""
    base = arch.split(".")[0].removesuffix("_in22k").removesuffix("_22k")
    return base, size, accum


def jobs(args):
    """[(label, [configs in order], how many to try before stopping at a fit, min images)]: plan archs, then
    convnext_small."""
    common = {"pretrained": False, "finetune": False, "epochs": 1, "bs": 64, "num_workers": args.workers}
    if args.cpu_smoke:
        common.update(bs=16, num_workers=0, item_size=(64, 48))
        models = [TrainConfig(arch=a, size=s, **common) for a, s in SMOKE_ARCHS]
        small = TrainConfig(arch="convnext_atto", size=48, **common)
    else:
        models = _plan_models(args.plan, common)
        small = TrainConfig(arch="convnext_small", size=128, item_size=(480, 480), **common)
    # Accum 1 and 2 are always measured (the notebooks report accum 2); larger ones only until one fits.
    out = [(f"{c.arch} {c.size[0]}x{c.size[1]}", [probe_config(c, a) for a in accum_candidates(c.bs)],
            2, None) for c in models]
    out.append((f"{small.arch} {small.size[0]}x{small.size[1]} accum 1/2/4",
                [probe_config(small, a) for a in (1, 2, 4)], 3, args.throughput_images))
    return out


def _plan_models(plan, common):
    """One config per distinct (arch, size) of the plan (fallback: the issue's list when the plan is missing)."""
    try:
        members = [(m.arch, m.size, m.item_size, m.item_method) for m in load_plan(plan).members]
    except PaddyError as error:
        print(f"plan {plan}: {error}; using the built-in list", flush=True)
        members = [(a, s, (480, 480), "squish") for a, s in FALLBACK_ARCHS]
    seen, models = set(), []
    for arch, size, item_size, method in members:
        if (arch, size) not in seen:
            seen.add((arch, size))
            models.append(TrainConfig(arch=arch, size=size, item_size=item_size, item_method=method, **common))
    return models


def run_job(data, job, device, budget_gb, timeout):
    """Probe one job in fresh subprocesses: its first `always` tries, then the rest until one fits. A failure or a
    timeout is recorded as an error row, never raised."""
    label, configs, always, min_images = job
    start, results = time.perf_counter(), []
    try:
        first = TryRequest(data=str(data), device=device, configs=tuple(configs[:always]), min_images=min_images)
        results += search_in_subprocess(first, timeout=timeout)
        results = [r.judged(budget_gb) for r in results]
        rest = configs[always:]
        if rest and not any(r.fits for r in results):
            left = timeout - (time.perf_counter() - start)
            request = TryRequest(data=str(data), device=device, configs=tuple(rest), min_images=min_images,
                                 budget_gb=budget_gb)
            more = search_in_subprocess(request, timeout=left)
            results += [r.judged(budget_gb) for r in more]
        return results
    except ProbeTimeout as error:
        done = results + [r.judged(budget_gb) for r in error.results]
        return done + [_error_row(configs[min(len(done), len(configs) - 1)], str(error))]
    except Exception as error:  # noqa: BLE001 - one model's failure must not stop the others
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
        return results + [_error_row(configs[min(len(results), len(configs) - 1)], message)]


def _error_row(config, message):
    return TryResult(arch=config.arch, size=f"{config.size[0]}x{config.size[1]}", accum=config.accum,
                            micro_bs=config.micro_bs, error=message)


def markdown(meta, rows):
    """The results as a markdown table beside the notebooks' figures."""
    head = ["arch", "size", "accum", "micro bs", "peak alloc MB", "peak reserved MB", "process total MB",
            "notebook MB (24 GB card)", "ours / notebook", "fits 16 GB", "images/s", "seconds", "error"]
    lines = [f"# GPU check: {meta['device_name']}", "",
             f"torch {meta['torch']}, timm {meta['timm']}, fastai {meta['fastai']}; fp16 on CUDA; random weights; "
             f"synthetic {meta['image_size']} JPEGs; budget {meta['budget_gb']:g} GB; total {meta['elapsed_s']:.0f} s"
             + (" (incomplete)" if not meta.get("complete") else ""), ""]
    cells = []
    for r in rows:
        ref = NOTEBOOK_MB.get(notebook_key(r["arch"], r["size"], r["accum"]))
        ratio = f"{r['process_total_mb'] / ref:.2f}" if ref and r["process_total_mb"] == r["process_total_mb"] else ""
        cells.append([r["arch"], r["size"], r["accum"], r["micro_bs"], format_mb(r["peak_allocated_mb"]),
                      format_mb(r["peak_reserved_mb"]), format_mb(r["process_total_mb"]), ref or "",
                      ratio, "yes" if r["fits"] else "no", format_mb(r["images_per_s"]),
                      f"{r['seconds']:.1f}", r["error"][:80]])
    return "\n".join(lines + markdown_table(head, cells)) + "\n"


def write_results(out, meta, rows):
    """Rewrite gpu_check.json and gpu_check.md atomically."""
    atomic.write_json(Path(out) / "gpu_check.json", {"meta": meta, "results": rows})
    atomic.write_text(Path(out) / "gpu_check.md", markdown(meta, rows))


def environment(device, budget_gb):
    """Library versions and the device's name, for the results' header."""
    import fastai
    import timm
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (smoke run; peak RSS)"
    return {"device": device, "device_name": name, "torch": torch.__version__, "timm": timm.__version__,
            "fastai": fastai.__version__, "budget_gb": budget_gb}


def main(argv=None):
    """Make the data, probe every job within the time limit, write results after each; return the exit code."""
    import torch

    args = parse_args(argv)
    start = time.perf_counter()
    if args.cpu_smoke:
        # Tiny models on small shared CPUs lose badly to intra-op threading; the tries' subprocesses inherit this.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device; run with --cpu-smoke to check the flow on CPU", file=sys.stderr)
        return 2
    meta, rows = environment(device, args.budget_gb), []
    meta["image_size"] = "64x48" if args.cpu_smoke else "480x640"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        size = tuple(int(n) for n in meta["image_size"].split("x"))
        data = make_sample(Path(tmp) / "data", n_train=args.n_train, n_test=8, size=size)
        print(f"[{time.perf_counter() - start:5.0f}s] sample of {args.n_train} {size[0]}x{size[1]} images", flush=True)
        wanted = [w for w in args.only.split(",") if w]
        todo = [j for j in jobs(args) if not wanted or any(w in j[0] for w in wanted)]
        for index, job in enumerate(todo):
            left = args.time_limit - (time.perf_counter() - start)
            if left <= 0:
                rows += [_error_row(c, "skipped: time limit").to_dict() for c in job[1][:1]]
                continue
            results = run_job(data, job, device, args.budget_gb, timeout=left + 60)
            rows += [r.to_dict() for r in results]
            meta.update(elapsed_s=time.perf_counter() - start, complete=index == len(todo) - 1)
            write_results(args.out, meta, rows)
            summary = ", ".join(f"accum {r.accum}: {r.budget_mb:.0f} MB{'' if not r.error else ' ' + r.error[:60]}"
                                for r in results)
            print(f"[{time.perf_counter() - start:5.0f}s] {job[0]}: {summary}", flush=True)
    meta.update(elapsed_s=time.perf_counter() - start)
    write_results(args.out, meta, rows)
    print(markdown(meta, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
