"""The memory estimate against the GPU's measurements, and its speed on a whole plan, on this CPU.

    python bench/estimate.py --refresh   # trace each measured row's epoch again: rewrites results/h200/calibration.json
    python bench/estimate.py             # leave-one-out table, the accum chosen for 16 GB, the plan's estimate timed

The measured rows are bench/results/h200/gpu_check*.json (bench/gpu_check.py on an H200). Each row is traced with the
schedule that run really had: gpu_check's sample of 300 images left the plan models 66 training images (one step
per epoch: accum 1 ran one micro-batch, accum 2 two, before a single optimizer step), and convnext_small, probed with
at least 400 images, 320 (five steps or more: the steady state). Leave-one-out: each row's estimate comes from a
calibration fitted on the other rows only.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from paddy.core.config import TrainConfig  # noqa: E402
from paddy.core.plan import load_plan  # noqa: E402
from paddy.data.folder import train_items, valid_mask  # noqa: E402
from paddy.data.sample import make_sample  # noqa: E402
from paddy.probe import calibrate, estimate  # noqa: E402
from paddy.probe.search import accum_candidates, probe_config  # noqa: E402
from paddy.probe.worker import probe_items  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "h200"
GPU_CHECK_MIN_IMAGES = {"convnext_small": 400}  # gpu_check's --throughput-images default; the plan models: none
GPU_CHECK_ITEM_SIZE = {"convnext_small": (480, 480)}  # the plan models: their first plan member's item size
BUDGET_GB = 16.0


def measured_rows():
    """The GPU rows with figures (failed tries dropped), in file order."""
    rows = []
    for path in sorted(RESULTS.glob("gpu_check*.json")):
        data = json.loads(path.read_text())
        for row in data["results"]:
            if row["peak_allocated_mb"] == row["peak_allocated_mb"]:  # NaN: the try failed
                rows.append({**row, "source": path.name, "measured_with": f"torch {data['meta']['torch']}, "
                             f"timm {data['meta']['timm']}, {data['meta']['device_name']}"})
    return rows


def gpu_check_train_images(min_images):
    """How many training images a gpu_check try had: its 300-image sample's smallest class through the probe."""
    with tempfile.TemporaryDirectory() as tmp:
        items = train_items(make_sample(Path(tmp) / "data", n_train=300, n_test=1, size=(8, 8)))
    config = TrainConfig(arch="resnet10t", bs=64)
    chosen = probe_items(items, config, min_images=min_images)
    return int(len(chosen) - sum(valid_mask(chosen["image_id"], config.valid_pct, config.valid_seed)))


def row_config(row, plan):
    """The TrainConfig gpu_check probed for a row."""
    size = tuple(int(s) for s in row["size"].split("x"))
    members = [m for m in plan.members if m.arch == row["arch"] and tuple(m.size) == size]
    item = members[0].item_size if members else GPU_CHECK_ITEM_SIZE[row["arch"]]
    return TrainConfig(arch=row["arch"], size=size, item_size=item, bs=64, accum=row["accum"], pretrained=False,
                       finetune=False, epochs=1)


def refresh(vocabs):
    """Trace every measured row's epoch and rewrite calibration.json."""
    plan, images, rows = load_plan("road-to-the-top"), {}, []
    for row in measured_rows():
        config = row_config(row, plan)
        min_images = GPU_CHECK_MIN_IMAGES.get(row["arch"])
        if min_images not in images:
            images[min_images] = gpu_check_train_images(min_images)
        start = time.perf_counter()
        traced = estimate.trace_schedule(config, vocabs, images[min_images] // config.micro_bs)
        rows.append({"arch": row["arch"], "size": row["size"], "item_size": list(config.item_size),
                     "accum": row["accum"], "micro_bs": row["micro_bs"], "train_images": images[min_images],
                     "traced_alloc_mb": round(traced.allocated_mb, 1), "traced_reserved_mb": traced.reserved_mb,
                     "traced_storage_mb": round(traced.storage_mb, 1),
                     **{k: row[k] for k in ("peak_allocated_mb", "peak_reserved_mb", "process_total_mb",
                                            "source", "measured_with")}})
        print(f"traced {row['arch']} {row['size']} accum {row['accum']} in {time.perf_counter() - start:.1f} s",
              flush=True)
    path = calibrate.calibration_path("h200")
    path.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")


def loo_report(rows):
    """Leave-one-out: measured, estimated and error per row, then the accum chosen for 16 GB per (arch, size)."""
    print(f"leave-one-out over {len(rows)} H200 rows (MB; error = estimated / measured - 1)\n")
    print("| arch | size | accum | traced alloc | peak alloc | est. alloc | error | process total | est. total "
          "| error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    chosen, worst = {}, {"alloc": 0.0, "total": 0.0}
    for row, alloc, total in calibrate.leave_one_out(rows):
        e_alloc = alloc / row["peak_allocated_mb"] - 1
        e_total = total / row["process_total_mb"] - 1
        worst = {"alloc": max(worst["alloc"], abs(e_alloc)), "total": max(worst["total"], abs(e_total))}
        print(f"| {row['arch']} | {row['size']} | {row['accum']} | {row['traced_alloc_mb']:.0f} | "
              f"{row['peak_allocated_mb']:.0f} | {alloc:.0f} | {e_alloc:+.1%} | {row['process_total_mb']:.0f} | "
              f"{total:.0f} | {e_total:+.1%} |")
        key = (row["arch"], row["size"])
        fits = chosen.setdefault(key, {"measured": None, "estimated": None})
        for name, value in (("measured", row["process_total_mb"]), ("estimated", total)):
            if value <= BUDGET_GB * 1024 and (fits[name] is None or row["accum"] < fits[name]):
                fits[name] = row["accum"]
    print(f"\nworst |error|: peak allocated {worst['alloc']:.1%} (goal 10%), process total {worst['total']:.1%} "
          f"(goal 15%)\n\naccum chosen for {BUDGET_GB:g} GB (smallest measured accum whose total fits):")
    for (arch, size), fits in chosen.items():
        same = "same" if fits["measured"] == fits["estimated"] else "DIFFERENT"
        print(f"- {arch} {size}: measured {fits['measured']}, estimated {fits['estimated']} ({same})")


def time_plan(vocabs, plan_name, budget_gb):
    """Estimate every member of a plan (steady state) and print the time per model and the chosen accum."""
    plan = load_plan(plan_name)
    calibration = calibrate.load_calibration("h200")
    print(f"\n{plan_name}: steady-state estimate, budget {budget_gb:g} GB, calibrated on {calibration.rows} "
          f"{calibration.gpu} rows (total = {calibration.total_intercept_mb:.0f} MB + "
          f"{calibration.total_slope:.3f} x traced, allocated = {calibration.alloc_ratio:.3f} x traced)")

    def show(config, estimates, seconds):
        tries = ", ".join(e.error or f"accum {e.accum}: {e.estimated_total_mb:.0f} MB" for e in estimates)
        print(f"- {config.run_name}: {tries} ({seconds:.1f} s)", flush=True)

    start = time.perf_counter()
    configs = [probe_config(m) for m in plan.members]
    estimate.estimate_configs(configs, vocabs, lambda c: accum_candidates(c.bs, 16), calibration,
                              budget_gb, on_done=show)
    print(f"whole plan: {time.perf_counter() - start:.1f} s")


def main(argv=None):
    """Refresh the traces, or print the leave-one-out table and the plan's timing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refresh", action="store_true", help="trace the measured rows again (about 2 minutes)")
    parser.add_argument("--plan", default="road-to-the-top")
    parser.add_argument("--no-plan", action="store_true", help="skip timing the plan")
    args = parser.parse_args(argv)
    vocabs = {"label": tuple(f"class{i}" for i in range(10))}  # the competition's ten labels: the head's size
    if args.refresh:
        refresh(vocabs)
    loo_report(calibrate.read_rows(calibrate.calibration_path("h200")))
    if not args.no_plan:
        time_plan(vocabs, args.plan, BUDGET_GB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
