"""`paddy demo`: the kit's main job end to end on a small synthetic competition, on CPU, in minutes.

It calls the same library functions as the CLI, in a competitor's order: sample, check, resize, probe two tiny
architectures, train a disease-only and a disease+variety member with gradient accumulation and 3-fold
cross-validation (every training image predicted out of fold), fit blend weights on those OOF predictions and
score them nested against equal weights and the best member, then write and check the submission. Everything
goes under one work folder, and a rerun reuses what is already there (the sample, resized copies, complete runs).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from paddy.core import runtime
from paddy.core.config import TrainConfig
from paddy.core.plan import Plan, write_plan
from paddy.core.run_folder import describe_errors
from paddy.data.check import require_valid
from paddy.data.resize import resize_folder
from paddy.data.sample import make_sample
from paddy.ensemble.blend import ensemble_runs, format_ensemble_table
from paddy.ensemble.submission import check_submission_file
from paddy.probe.report import format_probe_table
from paddy.probe.run import choose_accum, run_probe
from paddy.vision.run import train_plan

N_TRAIN, N_TEST = 240, 24
IMAGE_SIZE = (240, 320)  # width x height: portrait like the real photos, smaller so the demo stays quick
MAX_SIZE = 64  # the resized copy the models train on
FOLDS = 3
FIT = "caruana"
SHARED = dict(size=(48, 48), item_size=(64, 48), epochs=5, lr=1e-2, bs=16, accum=2, finetune=False, pretrained=False,
              seed=42, split_seed=42, tta="2,0.25", num_workers=0, device="auto", folds=FOLDS)


def demo_plan():
    """Two tiny members sharing 3 folds: disease only, and disease + variety (both accum 2)."""
    members = (TrainConfig(arch="resnet10t", targets=("label",), name="resnet10t-disease", **SHARED),
               TrainConfig(arch="convnext_atto", targets=("label", "variety"), target_weights=(1.0, 0.5),
                           name="convnext_atto-disease-variety", **SHARED))
    return Plan(members=members, budget_gb=8.0, description="paddy demo: two tiny CPU members, 3 folds, accum 2, TTA")


@dataclass
class DemoResult:
    """Where each output went and what each step measured, in step order."""

    workdir: Path
    steps: list = field(default_factory=list)  # (step, seconds, what it measured, where its output is)

    def add(self, step, seconds, measured, where=""):
        """Record one finished step."""
        self.steps.append((step, seconds, measured, str(where)))

    def summary(self):
        """A readable summary: one block per step, then the total time."""
        lines = [f"paddy demo: everything is under {self.workdir}"]
        for step, seconds, measured, where in self.steps:
            lines.append(f"\n== {step} ({seconds:.1f} s)" + (f" -> {where}" if where else ""))
            lines += ["   " + line for line in str(measured).splitlines()]
        lines.append(f"\ntotal {sum(s[1] for s in self.steps):.1f} s")
        return "\n".join(lines)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def step_sample(workdir, result):
    """Make the synthetic competition folder (kept if a previous demo made it)."""
    data = workdir / "data"
    if (data / "train.csv").is_file():
        result.add("sample", 0.0, "reused the sample from a previous demo", data)
        return data
    _, seconds = _timed(make_sample, data, n_train=N_TRAIN, n_test=N_TEST, size=IMAGE_SIZE, seed=42)
    result.add("sample", seconds, f"{N_TRAIN} train + {N_TEST} test JPEGs, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}", data)
    return data


def step_check_and_resize(data, workdir, result):
    """Check the folder (every JPEG decoded), then cache copies at MAX_SIZE px and check those too."""
    report, seconds = _timed(require_valid, data, progress=False)
    result.add("check", seconds, f"clean: {report.n_train_images} train and {report.n_test_images} test images "
               "decoded, CSVs consistent", data)
    small = workdir / f"data{MAX_SIZE}"
    summary, seconds = _timed(resize_folder, data, small, MAX_SIZE, progress=False)
    require_valid(small, progress=False)
    result.add("resize", seconds, summary.describe(), small)
    return small


def step_probe(data, plan, workdir, result):
    """Peak memory of each member's arch at accum 1, 2, ... until it fits the plan's budget (in-process, CPU)."""
    out = workdir / "probe"
    report, seconds = _timed(run_probe, data, plan.members, budget_gb=plan.budget_gb, max_accum=4, device="auto",
                             use_subprocess=False, out=out)
    chosen = ", ".join(f"{name}: accum {accum}" for name, accum in report.chosen.items())
    note = (f"smallest accum within {plan.budget_gb:g} GB: {chosen}\n"
            "(the demo still trains at accum 2, to show accumulation: the same effective batch in half-size steps)")
    result.add("probe", seconds, f"{format_probe_table(report)}\n{note}", out)
    return report


def describe_outcome(outcome: dict) -> str:
    """One line per trained fold or assembled member."""
    reused = " (reused)" if outcome.get("skipped") else ""
    if "n_oof" in outcome:  # a member assembled from its folds
        return (f"{outcome['run']}: {outcome['folds']} folds, out-of-fold error on all {outcome['n_oof']} training "
                f"images {describe_errors(outcome['oof_error_tta'])}{reused}")
    return (f"{outcome['run']}: {outcome['arch']}, {outcome['epochs']} epochs, accum {outcome['accum']} (micro-batch "
            f"{outcome['micro_bs']}), TTA {outcome['tta']}: valid error "
            f"{describe_errors(outcome['valid_error_tta'])}{reused}")


def step_train(data, plan, workdir, result):
    """Train both members' folds (complete folds and members from an earlier demo are reused)."""
    runs = workdir / "runs"
    write_plan(plan, workdir / "plan.toml")
    outcomes, seconds = _timed(train_plan, data, plan, runs, choose_accum=choose_accum)
    result.add("train", seconds, "\n".join(describe_outcome(o) for o in outcomes), runs)
    return [runs / member.run_name for member in plan.members]


def step_ensemble(run_dirs, data, workdir, result):
    """Fit blend weights on the members' OOF probabilities, write the submission, then check the written file."""
    out = workdir / "submissions" / "demo.csv"
    ensembled, seconds = _timed(ensemble_runs, run_dirs, data, out, message="paddy demo", overwrite=True, fit=FIT)
    result.add("ensemble", seconds, format_ensemble_table(ensembled), out)
    vocab = ensembled.members[0].test.vocab
    frame, seconds = _timed(check_submission_file, out, data=data, vocab=vocab)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(ensembled.label_counts.items()))
    result.add("submission check", seconds, f"{len(frame)} rows, every test id once, labels in the vocab: {counts}\n"
               f"logged to {ensembled.log}", out)
    return ensembled


def run_demo(workdir="demo", threads=1):
    """Run the whole demo under `workdir` and return a DemoResult (its .summary() is what the CLI prints)."""
    workdir = Path(workdir)
    runtime.seed_everything(42)
    result = DemoResult(workdir=workdir)
    plan = demo_plan()
    # Models this small lose to threading overhead on a busy 2-core machine: a resnet10t step at 48 px took
    # 6.1-7.2 s with 2 threads and 0.95-1.04 s with 1 here, under load.
    with runtime.torch_threads(threads):
        data = step_sample(workdir, result)
        small = step_check_and_resize(data, workdir, result)
        step_probe(small, plan, workdir, result)
        run_dirs = step_train(small, plan, workdir, result)
        step_ensemble(run_dirs, small, workdir, result)
    return result
