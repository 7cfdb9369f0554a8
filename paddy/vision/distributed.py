"""Data-parallel training of one run on several devices, through Hugging Face accelerate as fastai does it.

`launch_distributed` starts `devices` processes `python -m paddy.vision.distributed '<request JSON>'` with
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); each builds the same learner and
trains inside `distributed_ctx`, fastai's `learn.distrib_ctx()` with two changes that make it run on CPU (gloo)
and keep the global batch that of one process (below). Rank 0 alone writes the run folder (checkpoints, metrics,
model, probabilities; atomically, as a single process does); every rank resumes from its checkpoints.

- Batch: `bs` stays the global batch. Each process loads micro-batches of bs / (devices x accum) and accumulates
  bs / devices samples per optimizer step; DistributedDataParallel averages the gradients, so a step sees bs
  images as in one process. Each global micro-batch holds the same images, in the same order, as one process's
  micro-batch (fastai's DistributedDL gives each rank a contiguous slice of the epoch instead).
- Sync BN is off by default: each process normalises with its own micro-batch's statistics (like accumulation).
  `sync_bn=True` converts with timm's `convert_sync_batchnorm`, which keeps the activation inside timm's
  `BatchNormAct2d` (torch's converter, which fastai uses, drops it: timm issue #1254). LayerNorm models (convnext,
  vit, swin) have no batch norm to sync.
- Randomness: the model starts from the same seed everywhere (DDP also broadcasts rank 0's weights); each rank then
  draws its own augmentations (seed + rank). A resume restores rank 0's saved random states on rank 0 and reseeds
  the others, so a resumed data-parallel run continues from the same weights, optimizer and data order, but is not
  bit-exact like a resumed single-process run.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate.utils import DistributedDataParallelKwargs
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Learner
from fastai.torch_core import rank_distrib
from timm.layers import convert_sync_batchnorm

from paddy.core import atomic, run_folder, runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError, PaddyError
from paddy.data import folder, source
from paddy.vision.checkpoint import Journal
from paddy.vision.learner import build_learner, check_arch
from paddy.vision.run import (
    AccumChooser,
    prepare_run,
    resolve_config,
    resumed_accum,
    resumed_item_size,
    stored_config,
    train_run,
    write_run_outputs,
)
from paddy.vision.schedule import fit

WORKER = "paddy.vision.distributed"


def check_devices(config: TrainConfig, devices: int) -> None:
    """ConfigError unless `devices` processes can split `config`'s batch evenly (bs divisible by devices x accum)."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"devices must be a whole number >= 1, got {devices!r}")
    accum = config.accum if isinstance(config.accum, int) else 1
    if config.bs % (devices * accum):
        raise ConfigError(f"bs {config.bs} does not split into {devices} devices x accum {accum}: choose a bs "
                          f"divisible by {devices * accum}")
    if str(config.device).startswith("cuda") and devices > torch.cuda.device_count():
        raise ConfigError(f"--devices {devices} but {torch.cuda.device_count()} GPUs are visible")


def local_config(config: TrainConfig, devices: int, rank: int) -> TrainConfig:
    """What one process trains with: bs / devices samples per step (micro-batch bs / (devices x accum))."""
    device = f"cuda:{rank}" if str(config.device).startswith("cuda") else config.device
    return config.replace(bs=config.bs // devices, device=device)


class GlobalBatchDL(DistributedDL):
    """fastai's DistributedDL, with each global micro-batch made of one process's micro-batch, on any backend."""

    def _broadcast(self, t, rank):
        # fastai moves the indices to CUDA (nccl needs it); gloo works on CPU tensors.
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        t = torch.tensor(t, dtype=torch.long, device=device)
        torch.distributed.broadcast(t, rank)
        return t.cpu().tolist()

    def get_idxs(self):
        idxs = list(self.dl.get_idxs())
        idxs = self._broadcast(idxs, 0)  # rank 0's order everywhere
        self.n = len(idxs)
        self.n_padded = -(-self.n // self.world_size) * self.world_size
        idxs += (idxs * (self.n_padded // self.n))[:self.n_padded - self.n]
        chunk = self.bs * self.world_size  # one global micro-batch; rank r takes its r-th share of each
        mine = []
        for start in range(0, self.n_padded, chunk):
            part = idxs[start:start + chunk]
            share = len(part) // self.world_size
            mine += part[self.rank * share:(self.rank + 1) * share]
        return mine

    def __len__(self):
        # As many batches as one process with the global micro-batch: the one-cycle schedule counts them.
        chunk = self.bs * self.world_size
        return self.dl.n // chunk if self.dl.drop_last else -(-self.dl.n // chunk)

    def to_detach(self, b, cpu=True, gather=True):
        # Gathered batches come back in the one-process order; the padding sits at the end of the last one.
        b = self._to_detach(b, cpu, gather)
        last = gather and getattr(self, "i", 0) >= self.n_padded // self.world_size
        if not last or self.n_padded == self.n:
            return b
        return [x[:len(x) - (self.n_padded - self.n)] if x.ndim > 0 else x for x in b] if isinstance(
            b, (list, tuple)) else (b[:len(b) - (self.n_padded - self.n)] if b.ndim > 0 else b)


class GlobalBatchTrainer(DistributedTrainer):
    """fastai's DistributedTrainer with GlobalBatchDL, and timm's sync-BN converter when sync BN is on."""

    def __init__(self, sync_bn: bool = False, **kwargs):
        super().__init__(sync_bn=False, **kwargs)  # fastai's own conversion is torch's: never use it
        self.timm_sync_bn = sync_bn

    def before_fit(self):
        if self.timm_sync_bn:
            self.learn.model = convert_sync_batchnorm(self.learn.model)
        super().before_fit()

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else GlobalBatchDL(dl, device=self.learn.model.device)


@contextlib.contextmanager
def distributed_ctx(learn: Learner, sync_bn: bool = False, cpu: bool = False) -> Iterator[Learner]:
    """fastai's `learn.distrib_ctx()` with GlobalBatchTrainer: train inside it in every process of a launch."""
    # fastai's timm body runs forward_features only: the timm model's own head (convnext's head.norm) gets no
    # gradient, which DDP refuses unless told to look for unused parameters.
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    trainer = GlobalBatchTrainer(sync_bn=sync_bn, cpu=cpu, kwargs_handlers=[unused])
    learn.add_cb(trainer)
    progress = [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)]
    if rank_distrib():
        learn.remove_cbs(progress)
    try:
        yield learn
    finally:
        learn.remove_cb(trainer)
        if rank_distrib():
            learn.add_cbs(progress)


def train_rank(data_path: Path, config: TrainConfig, out: Path, devices: int, sync_bn: bool = False) -> dict | None:
    """One process of a data-parallel run (rank from the environment); rank 0 writes the run folder and returns."""
    rank = rank_distrib()
    items = prepare_run(data_path, config, out, check_data=False)
    local = local_config(config, devices, rank)
    learn = build_learner(source.dataloaders(data_path, items, local), local)
    started = time.time()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / run_folder.CONFIG, stored_config(config, data_path))
    learn.path, learn.model_dir = out, run_folder.CHECKPOINTS
    journal = Journal(out, every_s=config.checkpoint_every, writer=rank == 0)
    start = journal.resume_point(learn)
    if rank:  # its own augmentations; rank 0 draws what one process would
        runtime.seed_everything(config.seed + rank)
    with distributed_ctx(learn, sync_bn=sync_bn, cpu=not str(config.device).startswith("cuda")):
        fit(learn, local, start=start, phase_cbs=journal.callback)
    leave_process_group()
    if rank:
        return None
    result = write_run_outputs(learn, config, data_path, out, journal.rows)
    result = {**result, "devices": devices, "seconds": round(time.time() - started, 1), "resumed_from": list(start)}
    atomic.write_json(out / run_folder.RESULT, result)  # last: its presence marks the run complete
    shutil.rmtree(out / run_folder.CHECKPOINTS, ignore_errors=True)
    return result


def leave_process_group() -> None:
    """Wait for every rank, then leave: rank 0 predicts and writes alone, as one process."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    # fastai decides whether to gather predictions across processes from WORLD_SIZE (num_distrib), not the group.
    os.environ["WORLD_SIZE"] = "1"


def free_port() -> int:
    """A free TCP port on the loopback interface, for the processes' rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_env(rank: int, devices: int, port: int, device: str, base: dict | None = None) -> dict:
    """torchrun's environment for process `rank` of `devices`; on CPU, its share of the cores."""
    env = dict(os.environ if base is None else base)
    env.update({"RANK": str(rank), "WORLD_SIZE": str(devices), "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(devices), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if not str(device).startswith("cuda"):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // devices))
    return env


def launch_distributed(data_path: str | Path | None, config: TrainConfig, out: str | Path, devices: int,
                       budget_gb: float | None = None, choose_accum: AccumChooser | None = None,
                       sync_bn: bool = False, check_data: bool = True) -> dict:
    """Train one run on `devices` processes (GPUs, or CPU processes on gloo); returns rank 0's result."""
    out = Path(out)
    if run_folder.is_complete(out):
        return train_run(data_path, config, out)  # skipped, after its config check
    data_path = folder.find_data(data_path)
    config = source.resolve_item_size(data_path, resumed_item_size(out, config))
    check_arch(config.arch)
    config = resolve_config(data_path, resumed_accum(out, config), budget_gb, choose_accum)
    check_devices(config, devices)
    prepare_run(data_path, config, out, check_data=check_data)  # every check before a process starts
    request = json.dumps({"data": str(data_path), "config": config.to_dict(), "out": str(out),
                          "devices": devices, "sync_bn": sync_bn})
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="paddy-ranks-") as logs:
        processes = []
        for rank in range(devices):
            # Rank 0 speaks for the run (fastai's epoch table); the others' output is kept for a failure report.
            handle = None if rank == 0 else open(Path(logs) / f"rank{rank}.log", "w")
            processes.append(subprocess.Popen([sys.executable, "-m", WORKER, request], stdout=handle,
                                              stderr=subprocess.STDOUT if handle else None,
                                              env=rank_env(rank, devices, port, config.device)))
            if handle:
                handle.close()
        failed = wait_all(processes)
        if failed is not None:
            raise PaddyError(f"data-parallel process {failed} of {devices} failed "
                             f"({_last_line(Path(logs) / f'rank{failed}.log')}); {out} keeps its last complete "
                             "epoch: rerun the same command to resume")
    return run_folder.read_json(out, run_folder.RESULT)


def wait_all(processes: list, poll_s: float = 0.2) -> int | None:
    """Wait for every process; when one fails, stop the others (they would wait for it) and return its rank."""
    try:
        while any(p.poll() is None for p in processes):
            failed = [rank for rank, p in enumerate(processes) if p.poll() not in (None, 0)]
            if failed:
                break
            time.sleep(poll_s)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
            process.wait()
    failed = [rank for rank, p in enumerate(processes) if p.returncode != 0]
    return failed[0] if failed else None


def _last_line(log):
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
    return lines[-1] if lines else "see its output above"


def main(argv: list | None = None) -> int:
    """One process of a launch: read the request, train this rank, leave the process group."""
    request = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        config = TrainConfig.from_dict(request["config"])
        with runtime.progress_bars(False):
            train_rank(Path(request["data"]), config, Path(request["out"]), request["devices"], request["sync_bn"])
    except PaddyError as error:
        print(f"paddy: {error}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
