"""A training run end to end: check, build, fit with checkpoints, predict, and write the run folder.

Gradient accumulation (`accum=K`) runs micro-batches of `bs // K` and steps the optimizer once every `bs` samples
(fastai's `GradientAccumulation(n_acc=bs)` counts samples), so the effective batch and learning rate stay those of
`bs`; when `bs // K` does not divide `bs`, once every whole number of micro-batches that fits in `bs`. With batch
norm it is NOT exactly equivalent: batch statistics come from each micro-batch, not the full batch.

Accum "auto" is the memory probe's to choose, and the probe trains through this module: the caller passes
`choose_accum(data, config, budget_gb) -> int` in (the CLI, a kernel and the demo pass
`paddy.probe.run.choose_accum`), so `vision` never imports `probe`.

K-fold members (config.folds = K): each fold is an ordinary run folder, runs/<member>/fold-<i>/, whose validation
set is fold i of runs/folds.csv (paddy/data/folds.py, shared by every member in runs/); when the last fold is
complete the member folder gets its out-of-fold and fold-averaged test probabilities (paddy/core/oof.py).
"""

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import fastai
import numpy as np
import pandas as pd
import timm
import torch
from fastai.learner import Learner

from paddy import __version__
from paddy.core import accelerators, atomic, lock, oof, run_folder, runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.core.plan import Plan
from paddy.data import folder, source
from paddy.data.folds import FoldSplit, check_fold, ensure_folds, fold_split
from paddy.data.loaders import dataloader_vocabs
from paddy.vision.checkpoint import Journal
from paddy.vision.console import console_output
from paddy.vision.history import plot_metrics
from paddy.vision.learner import build_learner, check_arch
from paddy.vision.predict import predict, split_probs
from paddy.vision.schedule import fit

AccumChooser = Callable[[Path, TrainConfig, float], int]  # (data, config, budget_gb) -> the smallest accum that fits
Say = Callable[[str], None]  # where a long step says what it is doing (the CLI prints; a library caller may log)
# A single run's budget for accum "auto" (a plan carries its own): one T4 of Kaggle's GPU T4 x2, 15 GB.
DEFAULT_BUDGET_GB = accelerators.budget_gb(accelerators.DEFAULT_ACCELERATOR)


def resolve_config(data_path: Path, config: TrainConfig, budget_gb: float | None = None,
                   choose_accum: AccumChooser | None = None) -> TrainConfig:
    """The config a run really uses: device resolved once, finetune decided, accum "auto" chosen by `choose_accum`."""
    config = config.replace(device=runtime.resolve_device(config.device), finetune=config.fine_tunes)
    if config.accum != "auto":
        return config
    if choose_accum is None:
        raise ConfigError("accum 'auto' needs the memory probe: run through paddy train, or give accum a number")
    budget = DEFAULT_BUDGET_GB if budget_gb is None else budget_gb
    return config.replace(accum=choose_accum(data_path, config, budget))


def stored_config(config: TrainConfig, data_path: Path) -> dict:
    """What config.json holds: the resolved config (flat), the split seed, data path, what that data is (images
    or an array cache, and what the cache was made from) and library versions."""
    versions = {"paddy": __version__, "fastai": fastai.__version__, "timm": timm.__version__,
                "torch": torch.__version__}
    return {**config.to_dict(), "valid_seed": config.valid_seed, "run_name": config.run_name,
            "data": str(data_path), "source": source.describe_source(data_path), "versions": versions}


def check_same_run(out: str | Path, config: TrainConfig, ignore_accum: bool = False) -> None:
    """ConfigError when folder `out` already holds a run of another config (a resume or skip would mix them)."""
    stored = Path(out) / run_folder.CONFIG
    if not stored.is_file():
        return
    # Device and worker count may change between attempts; "auto" accum was resolved when the run started. A
    # complete run passes `ignore_accum`: accum only splits the same effective batch, so a plan whose accum the
    # probe rewrote still skips the runs it already finished.
    ignore = ("device", "num_workers", "checkpoint_every") + (("accum",) if ignore_accum or config.accum == "auto"
                                                                else ())
    # A defaulted finetune takes the folder's (a run begun when pretrained=false still fine-tuned resumes so).
    ignore += ("finetune",) if config.finetune is None else ()
    saved = {**TrainConfig(arch=config.arch).to_dict(), **json.loads(stored.read_text())}  # fields added since
    changed = sorted(k for k, v in config.to_dict().items() if k not in ignore and saved.get(k) != v)
    if changed:
        raise ConfigError(f"{out} holds a run with a different config ({', '.join(changed)}); "
                          "choose another --out or delete it")


def check_run_folder(out: str | Path, config: TrainConfig) -> None:
    """ConfigError unless folder `out` is absent, empty, or a (complete or partial) run folder of `config`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")
    check_same_run(out, config, ignore_accum=run_folder.is_complete(out))
    if out.is_dir() and any(out.iterdir()) and not (out / run_folder.CONFIG).is_file():
        raise ConfigError(f"{out} is not empty and not a run folder; choose another --out")


def resumed_accum(out: str | Path, config: TrainConfig) -> TrainConfig:
    """An "auto" accum becomes the accum its run folder started with, so a resume neither probes nor changes it;
    so does a defaulted finetune (its default changed: a resume keeps the schedule the run started with)."""
    stored = Path(out) / run_folder.CONFIG
    if not stored.is_file():
        return config
    saved = json.loads(stored.read_text())
    if config.accum == "auto" and isinstance(saved.get("accum"), int):
        config = config.replace(accum=saved["accum"])
    if config.finetune is None and isinstance(saved.get("finetune"), bool):
        config = config.replace(finetune=saved["finetune"])
    return config


def resumed_item_size(out: str | Path, config: TrainConfig) -> TrainConfig:
    """An unset item size becomes the one its run folder started with (taken from its data then), so a complete
    run is skipped, and a partial one resumed, at the size it was trained at."""
    stored = Path(out) / run_folder.CONFIG
    if config.item_size is not None or not stored.is_file():
        return config
    item_size = json.loads(stored.read_text()).get("item_size")
    return config.replace(item_size=item_size) if item_size else config


def prepare_run(data_path: Path, config: TrainConfig, out: str | Path, check_data: bool = True,
                say: Say | None = None) -> pd.DataFrame:
    """Check everything a run needs before any file is written; return the training items. The cheap checks come
    first: a refused run says one line and nothing else, before the long data check says it has started."""
    check_arch(config.arch)
    check_run_folder(out, config)
    folder.read_train_csv(data_path, targets=config.targets)  # an array cache carries a copy of train.csv
    items = source.train_items(data_path)
    if source.test_items(data_path).empty:
        raise ConfigError(f"{data_path} has no test images to predict; run paddy check {data_path}")
    check_batches(items, config)
    if check_data:
        check_data_folder(data_path, config, say)
    return items


def check_batches(items: pd.DataFrame, config: TrainConfig) -> None:
    """ConfigError when the training split is smaller than one batch: fastai drops the last partial batch, so an
    epoch would see no image and the run would "finish" with NaN losses."""
    if config.folds:  # the largest fold is held out (stratified folds differ by a few images at most)
        n_train = len(items) - -(-len(items) // config.folds)
    else:
        n_train = len(items) - sum(folder.split_mask(list(items["image_id"]), config.valid_pct, config.valid_seed,
                                                     config.split))
    if n_train < config.bs:
        raise ConfigError(f"the training split has {n_train} images, fewer than one batch of {config.bs}; "
                          "lower --bs (bs in a plan)")


def check_data_folder(data_path: Path, config: TrainConfig, say: Say | None = None) -> None:
    """`source.require_ready` (a folder's every image decoded), said first: on a large folder it takes a while."""
    if say:
        say(f"checking {data_path} ({source.count_images(data_path)} images)...")
    source.require_ready(data_path, config)


def train_run(data_path: str | Path | None, config: TrainConfig, out: str | Path, cbs: tuple = (),
              budget_gb: float | None = None, check_data: bool = True,
              choose_accum: AccumChooser | None = None, split: FoldSplit | None = None,
              say: Say | None = None) -> dict:
    """Train one run into folder `out` and return its result; a complete folder is skipped, a partial one resumes.

    `split` makes it a cross-validation fold: that fold is the validation set. The run holds `out`'s lock
    throughout: a second run into the same folder is refused (ConfigError). `say(text)`, when given, hears what
    each long step is doing as it starts.
    """
    with lock.hold(out, "run folder"):
        return _train_run_locked(data_path, config, Path(out), cbs, budget_gb, check_data, choose_accum, split,
                                 say)


def _train_run_locked(data_path, config, out, cbs, budget_gb, check_data, choose_accum, split, say):
    config = resumed_item_size(out, config)
    if config.item_size is None:  # from the data, before the folder is compared with a stored config
        data_path = folder.find_data(data_path)
        config = source.resolve_item_size(data_path, config)
    if run_folder.is_complete(out):
        check_same_run(out, config, ignore_accum=True)
        return {**run_folder.read_json(out, run_folder.RESULT), "skipped": True}
    data_path = folder.find_data(data_path)
    check_arch(config.arch)  # before accum "auto" would probe an unknown arch
    config = resolve_config(data_path, resumed_accum(out, config), budget_gb, choose_accum)
    items = prepare_run(data_path, config, out, check_data=check_data, say=say)
    dls = source.dataloaders(data_path, items, config, valid_ids=None if split is None else split.valid_ids)
    learn = build_learner(dls, config)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves no folder behind
    fold = {} if split is None else {"fold": split.fold}
    atomic.write_json(out / run_folder.CONFIG, {**stored_config(config, data_path), **fold})
    learn.path, learn.model_dir = out, run_folder.CHECKPOINTS
    journal = Journal(out, every_s=config.checkpoint_every)
    start = journal.resume_point(learn)
    if say:
        say(describe_training(config, len(dls.train.items), len(dls.valid.items), start))
    with console_output(learn):
        fit(learn, config, cbs=cbs, start=start, phase_cbs=journal.callback)
    if say:
        say(f"predicting the validation and test images (TTA {config.tta})...")
    result = write_run_outputs(learn, config, data_path, out, journal.rows)
    result = {**result, "seconds": round(time.time() - started, 1), "resumed_from": list(start),
              **({} if split is None else split.result_keys())}
    atomic.write_json(out / run_folder.RESULT, result)  # last: its presence marks the run complete
    shutil.rmtree(out / run_folder.CHECKPOINTS, ignore_errors=True)
    return result


def describe_training(config: TrainConfig, n_train: int, n_valid: int, start: tuple = (0, 0)) -> str:
    """One line saying what is about to train: run, arch, schedule, images, device, and where a resume starts."""
    epochs = f"1 frozen + {config.epochs} epochs" if config.fine_tunes else f"{config.epochs} epochs"
    resumed = f", resuming at phase {start[0]} epoch {start[1]}" if start != (0, 0) else ""
    return (f"training {config.run_name}: {config.arch}, {epochs}, {n_train} train / {n_valid} valid images, "
            f"bs {config.bs} (accum {config.accum}), on {config.device}{resumed}")


def write_run_outputs(learn: Learner, config: TrainConfig, data_path: Path, out: Path, rows: list) -> dict:
    """Plot, exported model, vocab, validation and test probabilities; return the result summary."""
    plot_metrics(rows, out / run_folder.PLOT)
    with atomic.atomic_path(out / run_folder.MODEL) as tmp:
        learn.export(tmp)
    vocabs = dataloader_vocabs(learn.dls, config.targets)
    atomic.write_json(out / run_folder.VOCAB, {t: list(v) for t, v in vocabs.items()})
    valid_items = learn.dls.valid.items
    tests = source.test_items(data_path)
    with console_output(learn):  # after the export: model.pkl keeps fastai's own callbacks
        valid = split_probs(predict(learn, learn.dls.valid, config.tta, config.seed), vocabs, config.targets)
        test = split_probs(predict(learn, learn.dls.test_dl(tests), config.tta, config.seed), vocabs,
                           config.targets)
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


def train_plan(data_path: str | Path | None, plan: Plan, runs_dir: str | Path,
               choose_accum: AccumChooser | None = None, fold: int | None = None,
               say: Say | None = None) -> list:
    """Train every plan member into runs_dir/<run_name>, skipping complete runs; memory is freed between members.

    Members with folds train their folds (only fold `fold` when given) and share runs_dir/folds.csv.
    """
    data_path = folder.find_data(data_path)
    members = [source.resolve_item_size(data_path, m) for m in plan.members]  # run names carry the item size
    check_shared_folds(members)
    if fold is not None and not any(m.folds for m in members):
        raise ConfigError(f"--fold {fold}: no member of the plan has folds; set folds = K in the plan (or --folds K)")
    for member in members:  # check every arch, run folder and the data once, before hours of training start
        check_arch(member.arch)
        runtime.resolve_device(member.device)  # "cuda" on a CPU machine: say so now, not after the data check
        if member.folds:
            check_member(Path(runs_dir) / member.run_name, member, fold)
        else:
            check_run_folder(Path(runs_dir) / member.run_name, member)
    items = source.train_items(data_path)
    for member in members:  # a member whose bs exceeds the training split would train on nothing
        check_batches(items, member)
    for member in members if source.is_array_cache(data_path) else members[:1]:  # a cache: each item size
        check_data_folder(data_path, member, say)
    results = []
    for index, member in enumerate(members):
        out = Path(runs_dir) / member.run_name
        if say:
            say(f"member {index + 1} of {len(members)}: {member.run_name}")
        if member.folds:
            results += train_member(data_path, member, out, runs_dir, fold=fold, budget_gb=plan.budget_gb,
                                    check_data=False, choose_accum=choose_accum, say=say)
        elif fold is None:  # --fold trains one fold of the K-fold members; the others wait for a plain run
            results.append(train_run(data_path, member, out, budget_gb=plan.budget_gb, check_data=False,
                                     choose_accum=choose_accum, say=say))
        runtime.release_memory()  # train_run's learner is unreachable now; its cycles go only with a collection
    return results


def fold_indices(config: TrainConfig, fold: int | None = None) -> list:
    """The folds to train: all of them, or only `fold`."""
    if config.folds is None:
        raise ConfigError(f"{config.run_name} has no folds; set folds = K (or --folds K) to train fold {fold}")
    return list(range(config.folds)) if fold is None else [check_fold(fold, config.folds)]


def check_member(member_dir: str | Path, config: TrainConfig, fold: int | None = None) -> list:
    """Checks of a K-fold member that need no data: arch, fold index, and that its folders hold nothing else."""
    check_arch(config.arch)
    indices = fold_indices(config, fold)
    member_dir = Path(member_dir)
    if member_dir.exists() and not member_dir.is_dir():
        raise ConfigError(f"{member_dir} exists and is not a folder; choose another --out")
    stored = member_dir / run_folder.CONFIG
    if stored.is_file() and json.loads(stored.read_text()).get("folds") != config.folds:
        raise ConfigError(f"{member_dir} holds a run without these {config.folds} folds; choose another name or "
                          "runs folder")
    for i in indices:
        check_run_folder(oof.fold_dir(member_dir, i), config)
    return indices


def check_shared_folds(configs: tuple) -> None:
    """ConfigError unless every member with folds asks for the same K and split seed (they share folds.csv)."""
    kinds = {(c.folds, c.valid_seed) for c in configs if c.folds is not None}
    if len(kinds) > 1:
        found = ", ".join(f"folds={k} split_seed={s}" for k, s in sorted(kinds))
        raise ConfigError(f"members of one runs folder share one folds.csv, so need the same folds and split_seed; "
                          f"got {found}")


def train_member(data_path: str | Path | None, config: TrainConfig, member_dir: str | Path,
                 runs_dir: str | Path | None = None, fold: int | None = None, cbs: tuple = (),
                 budget_gb: float | None = None, check_data: bool = True,
                 choose_accum: AccumChooser | None = None, say: Say | None = None) -> list:
    """Train a K-fold member's folds (all, or only `fold`); return each fold's result, then the member's once whole."""
    member_dir = Path(member_dir)
    runs_dir = member_dir.parent if runs_dir is None else Path(runs_dir)
    config = resumed_item_size(oof.fold_dir(member_dir, 0), config)  # the size its folds started with, if any
    if oof.is_oof_member(member_dir):
        check_member(member_dir, config, fold)
        return [{**run_folder.read_json(member_dir, run_folder.RESULT), "skipped": True}]
    data_path = folder.find_data(data_path)
    config = source.resolve_item_size(data_path, config)
    indices = check_member(member_dir, config, fold)
    if check_data:
        check_data_folder(data_path, config, say)
    folds = ensure_folds(runs_dir, source.train_items(data_path), config.folds, config.valid_seed)
    results = []
    for i in indices:
        if say:
            say(f"{config.run_name}: fold {i} (of folds 0..{config.folds - 1})")
        result = train_run(data_path, config, oof.fold_dir(member_dir, i), cbs=cbs, budget_gb=budget_gb,
                           check_data=False, choose_accum=choose_accum, split=fold_split(folds, i), say=say)
        results.append({**result, "run": f"{config.run_name}/{oof.fold_dir('', i)}"})
        runtime.release_memory()
    fold_dirs = [oof.fold_dir(member_dir, i) for i in range(config.folds)]
    if all(run_folder.is_complete(d) for d in fold_dirs):  # the last fold done, here or on another machine
        results.append(oof.assemble_member(fold_dirs, member_dir))
    return results
