"""Checkpoints for an exact resume: model + optimizer, random states and fastai's fit state, when one is due.

Every use of fastai's internals lives in this module (the Recorder's running loss, GradientAccumulation's count,
each DataLoader's private `rng`, `save_model`/`load_model`); tests/test_vision_checkpoint.py fails loudly when an
upgrade changes one of them.
"""

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner, load_model, save_model

from paddy.core import atomic, run_folder
from paddy.vision.history import read_metrics, write_metrics

PROGRESS = "progress.json"  # inside checkpoints/: the last saved epoch
STATE_SUFFIX = ".state"  # beside each checkpoint: random states and fit state, for a bit-exact resume


class EpochSaver(Callback):
    """After each epoch: the metrics row, then (when due) checkpoint (model + optimizer) and progress marker."""

    order = 70  # after the Recorder (50) has computed this epoch's log

    def __init__(self, journal, index, phase, start_epoch):
        self.journal, self.index, self.phase, self.start_epoch = journal, index, phase, start_epoch

    def before_fit(self):
        if self.start_epoch and self.journal.fit_state is not None:  # continuing this phase mid-way
            set_fit_state(self.learn, self.journal.fit_state)  # after Recorder and accumulation reset theirs

    def before_epoch(self):
        self.started = time.time()

    def after_epoch(self):
        if self.epoch < self.start_epoch:  # fastai still calls after_epoch for the epochs it skips on resume
            return
        names = [n for n in self.recorder.metric_names if n not in ("epoch", "time")]
        values = dict(zip(names, self.recorder.log[1:len(names) + 1]))
        self.journal.record(self.learn, self.index, self.phase.name, self.epoch, values,
                            time.time() - self.started)


class Journal:
    """A run folder's training record: metrics.csv every epoch; a checkpoint and the progress marker when one is due.

    A checkpoint (model + optimizer + random and fit states) is due once `every_s` seconds have passed since the
    last one (or since the journal began): 0 saves every epoch. A resume starts after the last checkpoint and
    trains the later epochs again, exactly as they ran (their metrics rows are rewritten)."""

    def __init__(self, run: str | Path, rows: tuple = (), every_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, writer: bool = True):
        self.run, self.rows = Path(run), list(rows)
        self.writer = writer  # data-parallel: only rank 0 writes; the others read checkpoints to resume
        self.fit_state = None  # what the checkpoint resumed from carried inside its fit (see fit_state)
        self.checkpoints = self.run / run_folder.CHECKPOINTS
        self.every_s, self.clock = every_s, clock
        self.saved_at = clock()

    def callback(self, index, phase, start_epoch):
        """The fastai callback that records the epochs of one phase."""
        return [EpochSaver(self, index, phase, start_epoch)]

    def record(self, learn, index, phase, epoch, values, seconds):
        """Append the metrics row; when due, save checkpoint and state, then mark progress (a kill leaves a
        consistent state: the marker names a complete checkpoint and how many rows it covers)."""
        if not self.writer:
            return
        row = {"epoch": len(self.rows), "phase": phase, "phase_epoch": epoch,
               **{k: _plain_number(v) for k, v in values.items()}, "seconds": round(seconds, 2)}
        self.rows.append(row)
        write_metrics(self.run, self.rows)
        if self.clock() - self.saved_at >= self.every_s:
            self.save(learn, index, phase, epoch)
            self.saved_at = self.clock()

    def save(self, learn, index, phase, epoch):
        """Checkpoint `learn` after `epoch` of phase `index`, mark progress, and drop the previous checkpoint."""
        name = f"{index}-{phase}-{epoch}"
        with atomic.atomic_path(self.checkpoints / f"{name}.pth") as tmp:
            save_model(tmp, learn.model, learn.opt, with_opt=True)
        with atomic.atomic_path(self.checkpoints / f"{name}{STATE_SUFFIX}") as tmp:
            torch.save({"random": random_states(learn.dls), "fit": fit_state(learn)}, tmp)
        atomic.write_json(self.checkpoints / PROGRESS, {"phase": index, "epoch": epoch, "checkpoint": name,
                                                        "rows": len(self.rows)})
        for old in [*self.checkpoints.glob("*.pth"), *self.checkpoints.glob(f"*{STATE_SUFFIX}")]:
            if old.stem != name:  # keep only the latest: 2.4-3.7 GB each for the large models (README)
                old.unlink()

    def resume_point(self, learn: Learner) -> tuple[int, int]:
        """Load the last checkpoint into `learn` and return the (phase, epoch) to start from; (0, 0) when fresh."""
        marker = self.checkpoints / PROGRESS
        if not marker.is_file():
            return (0, 0)
        progress = json.loads(marker.read_text())
        if learn.opt is None:
            learn.create_opt()
        load_model(self.checkpoints / f"{progress['checkpoint']}.pth", learn.model, learn.opt,
                   device=learn.dls.device)
        self.load_state(learn, progress["checkpoint"])
        self.rows = read_metrics(self.run)[:progress["rows"]]
        return (progress["phase"], progress["epoch"] + 1)

    def load_state(self, learn, name):
        """Restore the random states saved with checkpoint `name`, keep its fit state; warn when it has none."""
        path = self.checkpoints / f"{name}{STATE_SUFFIX}"
        if not path.is_file():  # a checkpoint written before states were saved still resumes, not bit-exactly
            logging.getLogger(__name__).warning(f"{path} is missing (a checkpoint from an older paddy): resuming, "
                                                "but the run will not continue bit-exactly like an uninterrupted one")
            return
        state = torch.load(path, weights_only=True)
        set_random_states(state["random"], learn.dls)
        self.fit_state = state["fit"]  # only a fit's before_fit can restore it: fastai resets it there


def random_states(dls: DataLoaders) -> dict:
    """Python's, NumPy's, torch's (CPU and CUDA) and each DataLoader's shuffle RNG state, as plain data."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    return {"python": random.getstate(),
            # A list, not an ndarray: torch.load(weights_only=True) refuses arbitrary numpy objects.
            "numpy": (kind, keys.tolist(), pos, has_gauss, cached_gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # fastai's DataLoader shuffles (and reseeds itself each epoch) from its own random.Random.
            "dataloaders": [_unwrapped(dl).rng.getstate() for dl in dls.loaders]}


def set_random_states(states: dict, dls: DataLoaders) -> None:
    """Put back what `random_states` saved, so the next epoch draws what it would have drawn."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gauss))
    torch.set_rng_state(states["torch"])
    # A resume on another device (or device count) cannot be bit-exact anyway: restore CUDA only when it matches.
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    for dl, state in zip(dls.loaders, states["dataloaders"], strict=True):
        _unwrapped(dl).rng.setstate(state)


def _unwrapped(dl):
    # Data-parallel training wraps each DataLoader in a DistributedDL, which keeps the original as `.dl`.
    return vars(dl).get("dl", dl)


def fit_state(learn: Learner) -> dict:
    """What fastai carries from one epoch to the next of a fit: the running train loss and unstepped gradients."""
    smooth = learn.recorder.smooth_loss  # fastai's train_loss: a running average over all the fit's batches
    accumulation = getattr(learn, "gradient_accumulation", None)
    count = accumulation.count if accumulation is not None else 0
    # When an epoch's samples are not a multiple of bs, the last ones wait in .grad for the next epoch's step.
    grads = [None if p.grad is None else p.grad.detach().cpu() for p in learn.model.parameters()] if count else []
    # A float and CPU tensors: torch.load(weights_only=True) refuses fastai's TensorBase; float32 round-trips.
    return {"smooth_loss": (float(smooth.val), smooth.count), "accumulated": (count, grads)}


def set_fit_state(learn: Learner, state: dict) -> None:
    """Put back what `fit_state` saved, once the callbacks' before_fit have reset theirs."""
    smooth = learn.recorder.smooth_loss
    value, smooth.count = state["smooth_loss"]
    smooth.val = torch.tensor(value)
    count, grads = state["accumulated"]
    if count:
        learn.gradient_accumulation.count = count
        for param, grad in zip(learn.model.parameters(), grads, strict=True):
            param.grad = None if grad is None else grad.to(param.device)


def _plain_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
