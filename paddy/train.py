"""Training: any timm architecture through fastai, with gradient accumulation, checkpoints, resume and TTA outputs.

Gradient accumulation (`accum=K`) runs micro-batches of `bs // K` and steps the optimizer once every `bs` samples
(fastai's `GradientAccumulation(n_acc=bs)` counts samples), so the effective batch and learning rate stay those of
`bs`; when `bs // K` does not divide `bs`, once every whole number of micro-batches that fits in `bs`. With batch
norm it is NOT exactly equivalent: batch statistics come from each micro-batch, not the full batch.
"""

import difflib
import gc
import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from paddy import atomic, data, run_folder, runtime
from paddy.config import parse_tta
from paddy.errors import ConfigError

PROGRESS = "progress.json"  # inside checkpoints/: the last saved epoch
STATE_SUFFIX = ".state"  # beside each checkpoint: random states and fit state, for a bit-exact resume


def check_arch(name):
    """Return `name` when timm knows it (tags and deprecated aliases too); else ConfigError naming close matches."""
    import timm
    from timm.models import get_deprecated_models, get_pretrained_cfg, is_model, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    deprecated = get_deprecated_models()
    if arch in deprecated and deprecated[arch] is None:
        raise ConfigError(f"timm removed architecture {arch!r} without a replacement; choose another arch")
    if not is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models() + list(deprecated), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
        raise ConfigError(f"unknown timm architecture {name!r}; {hint}")
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = sorted(n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*"))
            known = ", ".join(tags) or "none"
            raise ConfigError(f"{arch!r} has no pretrained tag {tag!r}; known tags: {known}") from None
    return name


def build_learner(dls, config, device=None):
    """A fastai vision_learner on the timm arch: loss and metrics per target, accumulation, fp16 only on CUDA."""
    from fastai.vision.all import CrossEntropyLossFlat, GradientAccumulation, error_rate, vision_learner

    from paddy import multitask

    device = runtime.resolve_device(config.device if device is None else device)
    head_sizes = multitask.head_sizes_for(data.dataloader_vocabs(dls, config.targets), config.targets)
    if len(config.targets) > 1:
        loss_func = multitask.MultiTargetLoss(head_sizes, config.target_weights)
        metrics = multitask.multitask_metrics(config.targets, head_sizes)
    else:
        loss_func, metrics = CrossEntropyLossFlat(), [error_rate]
    # fastai counts samples, not batches: n_acc=bs steps once per effective batch of bs images. When the micro-batch
    # does not divide bs (bs=50, accum=4: micro-batches of 12), n_acc=bs would wait for a 5th (60 images) and scale
    # their gradient by 60/50; step after the whole micro-batches that fit in bs instead (48), at their mean.
    n_acc = config.micro_bs * (config.bs // config.micro_bs)
    cbs = [GradientAccumulation(n_acc=n_acc)] if config.micro_bs < config.bs else []
    runtime.seed_everything(config.seed)
    try:
        learn = vision_learner(dls, config.arch, pretrained=config.pretrained, n_out=sum(head_sizes),
                               loss_func=loss_func, metrics=metrics, cbs=cbs)
    except OSError as error:  # huggingface_hub's "not in the local cache" errors are FileNotFoundErrors
        if not config.pretrained:
            raise
        raise ConfigError(f"could not load pretrained weights for {config.arch} ({type(error).__name__}): go online "
                          "once to fill the Hugging Face cache, or train from scratch with --no-pretrained") from None
    if getattr(learn.model[0].model, "output_fmt", "NCHW") == "NHWC":
        # timm's swin and swinv2 return channels-last features; fastai's pooled head expects NCHW.
        learn.model[1] = nn.Sequential(ChannelsFirst(), learn.model[1])
    if str(device).startswith("cuda"):
        learn = learn.to_fp16()
    return learn


class ChannelsFirst(nn.Module):
    """NHWC features to NCHW, so a fastai head can pool them."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Phase:
    """One fit_one_cycle call of a run's schedule."""

    name: str
    epochs: int
    frozen: bool
    kwargs: dict


def schedule(config):
    """The run's phases: fastai's fine_tune split in its two cycles (so a run can resume), or one unfrozen cycle."""
    if not config.finetune:
        return (Phase("train", config.epochs, False, {"lr_max": config.lr}),)
    base = config.lr / 2  # fine_tune halves the lr after the frozen epoch; lr_mult=100, pct_start=0.3, div=5
    return (Phase("frozen", 1, True, {"lr_max": slice(config.lr), "pct_start": 0.99}),
            Phase("unfrozen", config.epochs, False, {"lr_max": slice(base / 100, base), "pct_start": 0.3, "div": 5.0}))


def fit(learn, config, cbs=(), start=(0, 0), phase_cbs=None):
    """Train per `schedule(config)`, from phase/epoch `start`; `phase_cbs(i, phase, start_epoch)` adds callbacks."""
    for index, phase in enumerate(schedule(config)):
        if index < start[0]:
            continue
        first = start[1] if index == start[0] else 0
        if first >= phase.epochs:
            continue
        if first == 0:
            learn.freeze_to(-1 if phase.frozen else 0)
            # GradientAccumulation restarts its count each fit but leaves the last fit's unstepped gradients in .grad:
            # they joined this phase's first step (and a run resumed at this phase lacked them).
            learn.model.zero_grad(set_to_none=True)
        else:
            # Learner.freeze_to also clears the optimizer state: right when a phase starts, wrong mid-phase, where
            # it would drop the state resume_point just loaded. The optimizer's own freeze_to keeps it.
            if learn.opt is None:
                learn.create_opt()
            learn.opt.freeze_to(-1 if phase.frozen else 0)
        extra = list(cbs) + (list(phase_cbs(index, phase, first)) if phase_cbs else [])
        learn.fit_one_cycle(phase.epochs, cbs=extra, start_epoch=first, **phase.kwargs)
    return learn


def _epoch_saver_class():
    from fastai.callback.core import Callback

    class EpochSaver(Callback):
        """After each epoch: checkpoint (model + optimizer), metrics row, progress marker, in that order."""

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

    return EpochSaver


class Journal:
    """A run folder's training record: per-epoch checkpoints, metrics.csv and the progress marker."""

    def __init__(self, run, rows=()):
        self.run, self.rows = Path(run), list(rows)
        self.fit_state = None  # what the checkpoint resumed from carried inside its fit (see fit_state)
        self.checkpoints = self.run / run_folder.CHECKPOINTS

    def callback(self, index, phase, start_epoch):
        """The fastai callback that records the epochs of one phase."""
        return [_epoch_saver_class()(self, index, phase, start_epoch)]

    def record(self, learn, index, phase, epoch, values, seconds):
        """Save checkpoint and state, append the metrics row, then mark progress (a kill leaves a consistent state)."""
        import torch
        from fastai.learner import save_model

        name = f"{index}-{phase}-{epoch}"
        with atomic.atomic_path(self.checkpoints / f"{name}.pth") as tmp:
            save_model(tmp, learn.model, learn.opt, with_opt=True)
        with atomic.atomic_path(self.checkpoints / f"{name}{STATE_SUFFIX}") as tmp:
            torch.save({"random": random_states(learn.dls), "fit": fit_state(learn)}, tmp)
        row = {"epoch": len(self.rows), "phase": phase, "phase_epoch": epoch,
               **{k: _plain_number(v) for k, v in values.items()}, "seconds": round(seconds, 2)}
        self.rows.append(row)
        write_metrics(self.run, self.rows)
        atomic.write_json(self.checkpoints / PROGRESS, {"phase": index, "epoch": epoch, "checkpoint": name,
                                                        "rows": len(self.rows)})
        for old in [*self.checkpoints.glob("*.pth"), *self.checkpoints.glob(f"*{STATE_SUFFIX}")]:
            if old.stem != name:  # keep only the latest: large models are ~1 GB each
                old.unlink()

    def resume_point(self, learn):
        """Load the last checkpoint into `learn` and return the (phase, epoch) to start from; (0, 0) when fresh."""
        from fastai.learner import load_model

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
        import torch

        path = self.checkpoints / f"{name}{STATE_SUFFIX}"
        if not path.is_file():  # a checkpoint written before states were saved still resumes, not bit-exactly
            logging.getLogger(__name__).warning(f"{path} is missing (a checkpoint from an older paddy): resuming, "
                                                "but the run will not continue bit-exactly like an uninterrupted one")
            return
        state = torch.load(path, weights_only=True)
        set_random_states(state["random"], learn.dls)
        self.fit_state = state["fit"]  # only a fit's before_fit can restore it: fastai resets it there


def random_states(dls):
    """Python's, NumPy's, torch's (CPU and CUDA) and each DataLoader's shuffle RNG state, as plain data."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    return {"python": random.getstate(),
            # A list, not an ndarray: torch.load(weights_only=True) refuses arbitrary numpy objects.
            "numpy": (kind, keys.tolist(), pos, has_gauss, cached_gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # fastai's DataLoader shuffles (and reseeds itself each epoch) from its own random.Random.
            "dataloaders": [dl.rng.getstate() for dl in dls.loaders]}


def set_random_states(states, dls):
    """Put back what `random_states` saved, so the next epoch draws what it would have drawn."""
    import numpy as np
    import torch

    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gauss))
    torch.set_rng_state(states["torch"])
    # A resume on another device (or device count) cannot be bit-exact anyway: restore CUDA only when it matches.
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    for dl, state in zip(dls.loaders, states["dataloaders"], strict=True):
        dl.rng.setstate(state)


def fit_state(learn):
    """What fastai carries from one epoch to the next of a fit: the running train loss and unstepped gradients."""
    smooth = learn.recorder.smooth_loss  # fastai's train_loss: a running average over all the fit's batches
    accumulation = getattr(learn, "gradient_accumulation", None)
    count = accumulation.count if accumulation is not None else 0
    # When an epoch's samples are not a multiple of bs, the last ones wait in .grad for the next epoch's step.
    grads = [None if p.grad is None else p.grad.detach().cpu() for p in learn.model.parameters()] if count else []
    # A float and CPU tensors: torch.load(weights_only=True) refuses fastai's TensorBase; float32 round-trips.
    return {"smooth_loss": (float(smooth.val), smooth.count), "accumulated": (count, grads)}


def set_fit_state(learn, state):
    """Put back what `fit_state` saved, once the callbacks' before_fit have reset theirs."""
    import torch

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


def write_metrics(run, rows):
    """metrics.csv: one row per epoch."""
    import pandas as pd

    atomic.write_csv(Path(run) / run_folder.METRICS, pd.DataFrame(rows))


def read_metrics(run):
    """metrics.csv rows as dicts (empty when absent)."""
    import pandas as pd

    path = Path(run) / run_folder.METRICS
    return pd.read_csv(path).to_dict("records") if path.is_file() else []


def plot_metrics(rows, path):
    """Loss curves (left) and error rates (right) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] + 1 for r in rows]
    for key in rows[0]:
        if key in ("epoch", "phase", "phase_epoch", "seconds"):
            continue
        axis = left if "loss" in key else right
        axis.plot(epochs, [r[key] for r in rows], marker="o", label=key)
    for axis, title in ((left, "loss"), (right, "error rate")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _flip_class():
    from fastai.callback.core import Callback

    class FlipInputs(Callback):
        """Mirror every input batch left-right (deterministic test-time augmentation)."""

        def before_batch(self):
            self.learn.xb = tuple(x.flip(-1) for x in self.xb)

    return FlipInputs


def predict(learn, dl, tta, seed=42):
    """Class probabilities for `dl` per the TTA setting: fastai's tta, plain+flipped mean, or one plain pass."""
    mode, n, beta = parse_tta(tta)
    runtime.seed_everything(seed)  # fastai's tta draws random augmentations
    # The loss function's activation (softmax, per head for multi-target) makes these probabilities, not logits.
    # no_logging: fastai's tta fires before_fit, which prints an empty epoch-table header into the training log.
    with learn.no_logging():
        if mode == "fastai":
            probs, _ = learn.tta(dl=dl, n=n, beta=beta)
        elif mode == "flip":
            plain, _ = learn.get_preds(dl=dl)
            flipped, _ = learn.get_preds(dl=dl, cbs=[_flip_class()()])
            probs = (plain + flipped) / 2
        else:
            probs, _ = learn.get_preds(dl=dl)
    return probs.float().cpu()


def split_probs(probs, vocabs, targets):
    """Per-target probability arrays, checked to be probabilities (each head's rows sum to 1)."""
    import numpy as np

    from paddy import multitask

    head_sizes = multitask.head_sizes_for(vocabs, targets)
    if len(targets) > 1:
        heads = multitask.split_heads(probs, head_sizes)
    else:
        heads = (probs,)
    arrays = {t: h.numpy().astype(np.float64) for t, h in zip(targets, heads, strict=True)}
    for target, array in arrays.items():
        if not np.allclose(array.sum(axis=1), 1.0, atol=1e-3):
            raise RuntimeError(f"{target} outputs are not probabilities (rows do not sum to 1): loss has no activation")
    return arrays


def resolve_config(data_path, config, budget_gb=None):
    """The config a run really uses: device resolved once, accum "auto" chosen by the memory probe."""
    config = config.replace(device=runtime.resolve_device(config.device))
    if config.accum != "auto":
        return config
    from paddy.memory import choose_accum

    budget = 16.0 if budget_gb is None else budget_gb
    return config.replace(accum=choose_accum(data_path, config, budget))


def stored_config(config, data_path):
    """What config.json holds: the resolved config (flat), the split seed, data path and library versions."""
    import fastai
    import timm
    import torch

    from paddy import __version__

    versions = {"paddy": __version__, "fastai": fastai.__version__, "timm": timm.__version__,
                "torch": torch.__version__}
    return {**config.to_dict(), "valid_seed": config.valid_seed, "run_name": config.run_name,
            "data": str(data_path), "versions": versions}


def check_same_run(out, config, ignore_accum=False):
    """ConfigError when folder `out` already holds a run of another config (a resume or skip would mix them)."""
    stored = Path(out) / run_folder.CONFIG
    if not stored.is_file():
        return
    # Device and worker count may change between attempts; "auto" accum was resolved when the run started. A
    # complete run passes `ignore_accum`: accum only splits the same effective batch, so a plan whose accum the
    # probe rewrote still skips the runs it already finished.
    ignore = ("device", "num_workers") + (("accum",) if ignore_accum or config.accum == "auto" else ())
    saved = json.loads(stored.read_text())
    changed = sorted(k for k, v in config.to_dict().items() if k not in ignore and saved.get(k) != v)
    if changed:
        raise ConfigError(f"{out} holds a run with a different config ({', '.join(changed)}); "
                          "choose another --out or delete it")


def check_out(out, config):
    """ConfigError unless folder `out` is absent, empty, or a (complete or partial) run folder of `config`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")
    check_same_run(out, config, ignore_accum=run_folder.is_complete(out))
    if out.is_dir() and any(out.iterdir()) and not (out / run_folder.CONFIG).is_file():
        raise ConfigError(f"{out} is not empty and not a run folder; choose another --out")


def resumed_accum(out, config):
    """An "auto" accum becomes the accum its run folder started with, so a resume neither probes nor changes it."""
    stored = Path(out) / run_folder.CONFIG
    if config.accum != "auto" or not stored.is_file():
        return config
    accum = json.loads(stored.read_text()).get("accum")
    return config.replace(accum=accum) if isinstance(accum, int) else config


def prepare_run(data_path, config, out, check_data=True):
    """Check everything a run needs before any file is written; return the training items."""
    from paddy.check import require_valid

    check_arch(config.arch)
    check_out(out, config)
    if check_data:
        require_valid(data_path, progress=False)
    data.read_train_csv(data_path, targets=config.targets)
    items = data.train_items(data_path)
    if data.test_items(data_path).empty:
        raise ConfigError(f"{data_path} has no test images to predict; run paddy check {data_path}")
    return items


def train_run(data_path, config, out, cbs=(), budget_gb=None, check_data=True):
    """Train one run into folder `out` and return its result; a complete folder is skipped, a partial one resumes."""
    out = Path(out)
    if run_folder.is_complete(out):
        check_same_run(out, config, ignore_accum=True)
        return {**run_folder.read_json(out, run_folder.RESULT), "skipped": True}
    data_path = data.find_data(data_path)
    check_arch(config.arch)  # before accum "auto" would probe an unknown arch
    config = resolve_config(data_path, resumed_accum(out, config), budget_gb)
    items = prepare_run(data_path, config, out, check_data=check_data)
    dls = data.image_dataloaders(items, config)
    learn = build_learner(dls, config)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves no folder behind
    atomic.write_json(out / run_folder.CONFIG, stored_config(config, data_path))
    learn.path, learn.model_dir = out, run_folder.CHECKPOINTS
    journal = Journal(out)
    start = journal.resume_point(learn)
    fit(learn, config, cbs=cbs, start=start, phase_cbs=journal.callback)
    result = write_outputs(learn, config, data_path, out, journal.rows)
    result = {**result, "seconds": round(time.time() - started, 1), "resumed_from": list(start)}
    atomic.write_json(out / run_folder.RESULT, result)  # last: its presence marks the run complete
    shutil.rmtree(out / run_folder.CHECKPOINTS, ignore_errors=True)
    return result


def write_outputs(learn, config, data_path, out, rows):
    """Plot, exported model, vocab, validation and test probabilities; return the result summary."""
    import numpy as np

    plot_metrics(rows, out / run_folder.PLOT)
    with atomic.atomic_path(out / run_folder.MODEL) as tmp:
        learn.export(tmp)
    vocabs = data.dataloader_vocabs(learn.dls, config.targets)
    atomic.write_json(out / run_folder.VOCAB, {t: list(v) for t, v in vocabs.items()})
    valid_items = learn.dls.valid.items
    valid = split_probs(predict(learn, learn.dls.valid, config.tta, config.seed), vocabs, config.targets)
    tests = data.test_items(data_path)
    test = split_probs(predict(learn, learn.dls.test_dl(tests), config.tta, config.seed), vocabs, config.targets)
    errors = {}
    for target in config.targets:
        truth = valid_items[target].astype(str).tolist()
        run_folder.write_probs(run_folder.valid_probs_path(out, target), valid_items["image_id"], valid[target],
                               vocabs[target], true=truth)
        run_folder.write_probs(run_folder.test_probs_path(out, target), tests["image_id"], test[target],
                               vocabs[target])
        predicted = np.asarray(vocabs[target])[valid[target].argmax(axis=1)]
        errors[target] = round(float(np.mean(predicted != np.asarray(truth))), 4)
    last = {k: v for k, v in rows[-1].items() if k not in ("phase", "phase_epoch")} if rows else {}
    return {"run": config.run_name, "arch": config.arch, "epochs": len(rows), "accum": config.accum,
            "micro_bs": config.micro_bs, "device": config.device, "tta": config.tta,
            "mixed_precision": any(type(cb).__name__ == "MixedPrecision" for cb in learn.cbs),
            "valid_error_tta": errors, "last_epoch": last, "n_valid": len(valid_items), "n_test": len(tests)}


def free_memory():
    """Collect the learner's reference cycles and return cached GPU memory (between plan members)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_plan(data_path, plan, runs_dir):
    """Train every plan member into runs_dir/<run_name>, skipping complete runs; memory is freed between members."""
    from paddy.check import require_valid

    data_path = data.find_data(data_path)
    for member in plan.members:  # check every arch, run folder and the data once, before hours of training start
        check_arch(member.arch)
        runtime.resolve_device(member.device)  # "cuda" on a CPU machine: say so now, not after the data check
        check_out(Path(runs_dir) / member.run_name, member)
    require_valid(data_path, progress=False)
    results = []
    for member in plan.members:
        result = train_run(data_path, member, Path(runs_dir) / member.run_name, budget_gb=plan.budget_gb,
                           check_data=False)
        results.append(result)
        free_memory()  # train_run's learner is unreachable now; its cycles go only with a collection
    return results
