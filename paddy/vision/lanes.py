"""Lanes: several runs (plan members, later folds) trained at once, one process per lane, one GPU per lane.

A lane is a child process `python -m paddy.vision.lanes '<request JSON>'` that trains one run with
`paddy.vision.run.train_run` into its ordinary, resumable run folder; `CUDA_VISIBLE_DEVICES` gives it its own GPU.
When a lane finishes the next waiting run takes its place, so two GPUs train a plan's members two at a time.
A failed lane costs only its own run (its folder resumes on the next attempt); the others go on. Each lane's
output goes to `<runs>/.lanes/<run name>.log` (a hidden folder, so `paddy ensemble runs/*` never sees it).

Everything that can be checked is checked in the parent before any lane starts: archs, run folders, the data,
and accum "auto", which the parent resolves with the caller's chooser (the probe), so lanes never probe.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from paddy.core import oof, run_folder, runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError, PaddyError
from paddy.core.plan import Plan
from paddy.data import folder, source
from paddy.data.folds import ensure_folds
from paddy.vision.distributed import check_devices, launch_distributed
from paddy.vision.learner import check_arch
from paddy.vision.run import (
    AccumChooser,
    Say,
    check_member,
    check_run_folder,
    check_shared_folds,
    resolve_config,
    resumed_accum,
    train_member,
    train_plan,
    train_run,
)

WORKER = "paddy.vision.lanes"
LOG_DIR = ".lanes"
POLL_S = 0.2


@dataclass(frozen=True)
class Job:
    """One run a lane trains: its resolved config and its run folder."""

    config: TrainConfig
    out: Path


def count_lanes(lanes: str | int, device: str, jobs: int, gpus: int | None = None) -> int:
    """How many lanes: "auto" is one per visible GPU on CUDA and 1 on CPU; never more than there are jobs."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    on_cuda = str(device).startswith("cuda")
    if lanes == "auto":
        wanted = gpus if on_cuda else 1
    else:
        try:
            wanted = int(lanes)
        except (TypeError, ValueError):
            raise ConfigError(f"lanes must be 'auto' or a whole number >= 1, got {lanes!r}") from None
        if wanted < 1:
            raise ConfigError(f"lanes must be 'auto' or a whole number >= 1, got {lanes!r}")
        if on_cuda and wanted > gpus:
            raise ConfigError(f"--lanes {wanted} needs {wanted} GPUs (one per lane) but {gpus} are visible; "
                              "use --lanes auto")
    return max(1, min(wanted, jobs))


def lane_env(lane: int, lanes: int, device: str, base: dict | None = None) -> dict:
    """The environment of lane `lane`: its own GPU on CUDA (from CUDA_VISIBLE_DEVICES when set), its CPU share else."""
    env = dict(os.environ if base is None else base)
    if str(device).startswith("cuda"):
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[lane] if visible else str(lane)
    else:
        # N lanes on one CPU: N processes with all cores each would fight over them.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // lanes))
    return env


def job_request(data_path: Path, job: Job, budget_gb: float) -> str:
    """The JSON a lane reads from its command line: data folder, resolved config, run folder, budget."""
    return json.dumps({"data": str(data_path), "config": job.config.to_dict(), "out": str(job.out),
                       "budget_gb": budget_gb})


def _skipped(data_path, job):
    if job.config.folds:
        check_member(job.out, job.config)
        return {**run_folder.read_json(job.out, run_folder.RESULT), "skipped": True}
    return train_run(data_path, job.config, job.out)  # it checks the stored config, then skips


def plan_jobs(data_path: Path, plan: Plan, runs_dir: Path, choose_accum: AccumChooser | None) -> list:
    """Check every member and its folders, resolve device and accum "auto" here; one Job per member (a K-fold
    member's lane trains all its folds)."""
    jobs = []
    for member in plan.members:
        check_arch(member.arch)
        runtime.resolve_device(member.device)
        out = Path(runs_dir) / member.run_name
        if member.folds:
            check_member(out, member)
        else:
            check_run_folder(out, member)
        if not run_folder.is_complete(out):  # a K-fold member's folds keep the accum its first fold started with
            started = oof.fold_dir(out, 0) if member.folds else out
            member = resolve_config(data_path, resumed_accum(started, member), plan.budget_gb, choose_accum)
        jobs.append(Job(member, out))
    return jobs


def require_data(data_path: Path, members: tuple, runs_dir: Path) -> None:
    """The data checks of a plan (each item size of an array cache), and folds.csv made before any lane starts."""
    for member in members if source.is_array_cache(data_path) else members[:1]:
        source.require_ready(data_path, member)
    folded = [m for m in members if m.folds]
    if folded:  # made here, once: two lanes must not both write it
        ensure_folds(runs_dir, source.train_items(data_path), folded[0].folds, folded[0].valid_seed)


def lane_result(job: Job, returncode: int, log: Path, lane: int) -> dict:
    """A finished lane's result.json (with its lane), or a failure record naming its log's last line."""
    if returncode == 0 and run_folder.is_complete(job.out):
        return {**run_folder.read_json(job.out, run_folder.RESULT), "lane": lane}
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
    return {"run": job.config.run_name, "failed": True, "lane": lane, "returncode": returncode,
            "error": lines[-1] if lines else f"exit status {returncode}", "log": str(log)}


def run_lanes(data_path: Path, jobs: list, lanes: int, budget_gb: float, log_dir: Path) -> list:
    """Train `jobs` in `lanes` child processes, the next job taking the first free lane; results in job order."""
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting, running, results = list(enumerate(jobs)), {}, {}
    try:
        while waiting or running:
            for lane in [n for n in range(lanes) if n not in running]:
                if waiting:
                    index, job = waiting.pop(0)
                    running[lane] = (index, job, *_start(data_path, job, lane, lanes, budget_gb, log_dir))
            time.sleep(POLL_S)
            for lane, (index, job, process, log) in list(running.items()):
                if process.poll() is not None:
                    results[index] = lane_result(job, process.returncode, log, lane)
                    del running[lane]
    finally:
        for _, _, process, _ in running.values():  # interrupted: stop the other lanes too; their folders resume
            process.terminate()
            process.wait()
    return [results[i] for i in range(len(jobs))]


def _start(data_path, job, lane, lanes, budget_gb, log_dir):
    log = log_dir / f"{job.config.run_name}.log"
    with open(log, "w") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", WORKER, job_request(data_path, job, budget_gb)],
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   env=lane_env(lane, lanes, job.config.device))
    return process, log


def train_plan_lanes(data_path: str | Path | None, plan: Plan, runs_dir: str | Path, lanes: str | int = "auto",
                     choose_accum: AccumChooser | None = None, sync_bn: bool = False, fold: int | None = None,
                     say: Say | None = None) -> list:
    """Train every plan member into runs_dir/<run_name>, `lanes` at a time; 1 lane (or one `fold`) in this process
    (`say` hears its steps, as in train_plan)."""
    data_path = folder.find_data(data_path)
    plan = dataclasses.replace(plan, members=tuple(source.resolve_item_size(data_path, m) for m in plan.members))
    device = runtime.resolve_device(plan.members[0].device)
    if plan.devices > 1:  # every member data-parallel on all its devices, one member after the other
        if lanes != "auto" or fold is not None or any(m.folds for m in plan.members):
            raise ConfigError("a plan with devices > 1 trains one plain member at a time on all of them: drop "
                              "--lanes, --folds and --fold")
        return train_plan_distributed(data_path, plan, Path(runs_dir), choose_accum, sync_bn)
    count = count_lanes(lanes, device, len(plan.members))
    if count == 1 or fold is not None:
        return train_plan(data_path, plan, runs_dir, choose_accum=choose_accum, fold=fold, say=say)
    check_shared_folds(plan.members)
    jobs = plan_jobs(data_path, plan, Path(runs_dir), choose_accum)
    require_data(data_path, plan.members, Path(runs_dir))
    # Complete runs are skipped here, as train_run would: a lane would spend seconds importing fastai to say so.
    done = {job.out: _skipped(data_path, job) for job in jobs if run_folder.is_complete(job.out)}
    todo = [job for job in jobs if job.out not in done]
    trained = iter(run_lanes(data_path, todo, min(count, len(todo)), plan.budget_gb, Path(runs_dir) / LOG_DIR)
                   if todo else [])
    return [done[job.out] if job.out in done else next(trained) for job in jobs]


def train_plan_distributed(data_path: Path, plan: Plan, runs_dir: Path, choose_accum: AccumChooser | None,
                           sync_bn: bool = False) -> list:
    """Every member data-parallel on `plan.devices` processes, one after the other; checks all of them first."""
    jobs = plan_jobs(data_path, plan, runs_dir, choose_accum)
    for job in jobs:
        check_devices(job.config, plan.devices)
    require_data(data_path, plan.members, runs_dir)
    return [launch_distributed(data_path, job.config, job.out, plan.devices, budget_gb=plan.budget_gb,
                               sync_bn=sync_bn, check_data=False) for job in jobs]


def describe_result(result: dict) -> str:
    """One line per run: epochs, validation error and time; or why its lane failed and where its log is."""
    lane = f" [lane {result['lane']}]" if "lane" in result else ""
    if result.get("failed"):
        return f"{result['run']}: FAILED{lane}: {result['error']} (log: {result['log']})"
    state = "skipped (complete)" if result.get("skipped") else f"{result.get('seconds')} s"
    if result.get("devices", 1) > 1:
        state += f" on {result['devices']} devices"
    errors = run_folder.describe_errors(result["valid_error_tta"])
    tta = result.get("tta", "?")
    return f"{result['run']}: {result['epochs']} epochs, valid error {errors} (TTA {tta}), {state}{lane}"


def failed_runs(results: list) -> list:
    """The run names of the results whose lane failed."""
    return [result["run"] for result in results if result.get("failed")]


def main(argv: list | None = None) -> int:
    """A lane: train the one run its JSON request names; the result goes to its run folder (and stdout)."""
    request = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        config = TrainConfig.from_dict(request["config"])
        out = Path(request["out"])
        with runtime.progress_bars(False):  # the lane's log keeps fastai's epoch table, not every bar update
            if config.folds:  # every fold, then the member's out-of-fold files
                result = train_member(request["data"], config, out, out.parent, budget_gb=request["budget_gb"],
                                      check_data=False)[-1]
            else:
                result = train_run(request["data"], config, out, budget_gb=request["budget_gb"], check_data=False)
    except PaddyError as error:
        print(f"paddy: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
