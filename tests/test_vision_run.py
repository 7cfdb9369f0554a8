"""Training: arch checks, accumulation equivalence, a complete run folder, resume, plans and bad input."""

import gc
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from paddy.cli.main import main
from paddy.core import run_folder
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.data import folder
from paddy.data.folder import train_items
from paddy.data.loaders import image_dataloaders
from paddy.vision.checkpoint import STATE_SUFFIX
from paddy.vision.history import read_metrics
from paddy.vision.learner import ChannelsFirst, build_learner, check_arch
from paddy.vision.predict import split_probs
from paddy.vision.run import train_plan, train_run
from paddy.vision.schedule import fit, schedule


def _config(**changes):
    # checkpoint_every=0: a checkpoint every epoch, so the resume tests can kill a run after its first epoch.
    base = dict(arch="resnet10t", size=32, item_size=(64, 48), bs=8, epochs=1, finetune=False, pretrained=False,
                num_workers=0, device="cpu", tta="flip", checkpoint_every=0)
    return TrainConfig(**{**base, **changes})


# --- architectures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet10t", "convnext_small.fb_in22k", "convnext_small_in22k",
                                  "vit_large_patch16_224", "swinv2_large_window12_192_22k"])
def test_check_arch_accepts_names_tags_and_old_aliases(name):
    assert check_arch(name) == name


def test_check_arch_rejects_with_close_matches():
    with pytest.raises(ConfigError, match="unknown timm architecture 'convnext_smal'.*convnext_small"):
        check_arch("convnext_smal")
    with pytest.raises(ConfigError, match="no pretrained tag 'nope'.*fb_in22k"):
        check_arch("convnext_small.nope")


def test_schedule_matches_fine_tune():
    frozen, unfrozen = schedule(_config(finetune=True, epochs=3, lr=0.01))
    assert (frozen.epochs, frozen.frozen, unfrozen.epochs, unfrozen.frozen) == (1, True, 3, False)
    assert unfrozen.kwargs["lr_max"] == slice(0.005 / 100, 0.005)  # fine_tune halves lr, lr_mult=100
    (only,) = schedule(_config(finetune=False, epochs=2, lr=0.01))
    assert (only.epochs, only.frozen, only.kwargs["lr_max"]) == (2, False, 0.01)


def test_random_weights_train_in_one_unfrozen_cycle_by_default():
    # A frozen epoch of a random body trains the head on random features: without weights, no fine_tune.
    (only,) = schedule(TrainConfig(arch="resnet10t", pretrained=False, epochs=5))
    assert (only.name, only.epochs, only.frozen) == ("train", 5, False)
    assert [p.name for p in schedule(TrainConfig(arch="resnet10t", epochs=5))] == ["frozen", "unfrozen"]
    assert len(schedule(TrainConfig(arch="resnet10t", pretrained=False, finetune=True))) == 2  # asked for
    assert len(schedule(TrainConfig(arch="resnet10t", finetune=False))) == 1


def test_cli_no_pretrained_defaults_to_one_cycle_and_finetune_can_be_asked_for(tmp_path):
    from paddy.cli.main import build_parser
    from paddy.cli.train import _config as cli_config

    def parsed(*flags):
        args = build_parser().parse_args(["train", "data", "--arch", "resnet10t", "--out", "x", *flags])
        return cli_config(args)

    assert not parsed("--no-pretrained").fine_tunes and parsed().fine_tunes
    assert parsed("--no-pretrained", "--finetune").fine_tunes and not parsed("--no-finetune").fine_tunes
    config = parsed("--valid-pct", "0.25", "--split-seed", "7", "--split", "random")
    assert (config.valid_pct, config.split_seed, config.split) == (0.25, 7, "random")


def test_a_run_begun_with_fine_tune_before_the_default_changed_keeps_it(tiny_sample, tmp_path):
    # A run folder written when finetune defaulted to true: its config.json says so, and a rerun of the same
    # command (finetune unset) must neither refuse it nor change its schedule.
    old = _config(finetune=True, tta="none")
    done = tmp_path / "done"
    _fake_run_folder(done, old, complete=True)
    assert train_run(tiny_sample, _config(finetune=None, tta="none"), done)["skipped"] is True
    partial = tmp_path / "partial"
    _fake_run_folder(partial, old, complete=False)
    result = train_run(tiny_sample, _config(finetune=None, tta="none"), partial)
    assert result["epochs"] == 2 and json.loads((partial / run_folder.CONFIG).read_text())["finetune"] is True
    fresh = train_run(tiny_sample, _config(finetune=None, tta="none"), tmp_path / "fresh")
    assert fresh["epochs"] == 1 and json.loads((tmp_path / "fresh" / run_folder.CONFIG).read_text())["finetune"] \
        is False


def test_a_run_folder_from_before_the_split_field_is_still_the_same_run(tiny_sample, tmp_path):
    config = _config()
    out = tmp_path / "old"
    out.mkdir()
    stored = {k: v for k, v in config.to_dict().items() if k != "split"}  # written before `split` existed
    (out / run_folder.CONFIG).write_text(json.dumps(stored))
    (out / run_folder.RESULT).write_text(json.dumps({"run": config.run_name, "epochs": 1}))
    assert train_run(tiny_sample, config, out)["skipped"] is True
    with pytest.raises(ConfigError, match=r"different config \(split\)"):
        train_run(tiny_sample, config.replace(split="random"), out)


# --- gradient accumulation ----------------------------------------------------------------------------------


def _strip_norm_and_dropout(module):
    # Batch norm makes micro-batches differ from the full batch, dropout makes passes random: remove both.
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)):
            setattr(module, name, nn.Identity())
        else:
            _strip_norm_and_dropout(child)


def _recording_callback():
    from fastai.callback.core import Callback

    class StepRecorder(Callback):
        order = 50  # after GradientAccumulation, which cancels the step until bs samples were seen

        def before_fit(self):
            self.grads, self.steps, self.batches = [], 0, 0

        def after_loss(self):
            self.batches += self.training  # validation batches do not count

        def before_step(self):
            self.grads.append([p.grad.detach().clone() for p in self.learn.model.parameters()])

        def after_step(self):
            self.steps += 1

    return StepRecorder()


def _fixed_learner(dls, config, xs, ys, state=None):
    """The kit's learner, without batch norm, fed fixed tensors in a fixed order."""
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader

    learn = build_learner(dls, config)
    _strip_norm_and_dropout(learn.model)
    if state is not None:
        learn.model.load_state_dict(state)
    pairs = list(zip(xs, ys))
    learn.dls = DataLoaders(DataLoader(pairs, bs=config.micro_bs, shuffle=False),
                            DataLoader(pairs[:4], bs=4, shuffle=False), device="cpu")
    return learn


def test_accumulation_equals_full_batch(tiny_sample):
    from fastai.torch_core import set_seed

    config = _config(bs=8, accum=4)
    dls = image_dataloaders(train_items(tiny_sample), config)
    xs, ys = [], []
    for _ in range(8):  # 16 fixed images: two effective batches of 8
        x, y = dls.train.one_batch()
        xs.extend(x[:2].float())
        ys.extend(y[:2])
    accumulated = _fixed_learner(dls, config, xs, ys)
    full = _fixed_learner(dls, config.replace(accum=1), xs, ys, state=accumulated.model.state_dict())
    results = []
    for learn in (accumulated, full):
        recorder = _recording_callback()
        set_seed(0)
        learn.fit(1, lr=1e-3, cbs=[recorder])
        results.append(recorder)
    acc, ref = results
    assert (acc.batches, acc.steps) == (8, 2)  # 8 micro-batches of 2, one step per effective batch of 8
    assert (ref.batches, ref.steps) == (2, 2)
    for step in range(2):
        for g_acc, g_ref in zip(acc.grads[step], ref.grads[step], strict=True):
            torch.testing.assert_close(g_acc, g_ref, rtol=1e-4, atol=1e-6)
    for p_acc, p_ref in zip(accumulated.model.parameters(), full.model.parameters(), strict=True):
        torch.testing.assert_close(p_acc, p_ref, rtol=1e-4, atol=1e-5)


def test_accumulation_when_the_micro_batch_does_not_divide_bs(tiny_sample):
    # bs=7, accum=2: micro-batches of 3. A step after two of them (6 images) is the mean gradient of those 6; with
    # n_acc=7 fastai waited for a third (9 images) and scaled their summed gradient by 1/7 instead of 1/9.
    config = _config(bs=7, accum=2)
    dls = image_dataloaders(train_items(tiny_sample), config)
    x, y = dls.train.one_batch()
    xs, ys = list(x.float()) * 4, list(y) * 4  # 12 fixed images: two steps of 6
    accumulated = _fixed_learner(dls, config, xs, ys)
    full = _fixed_learner(dls, config.replace(bs=6, accum=1), xs, ys, state=accumulated.model.state_dict())
    results = []
    for learn in (accumulated, full):
        recorder = _recording_callback()
        learn.fit(1, lr=1e-3, cbs=[recorder])
        results.append(recorder)
    acc, ref = results
    assert (acc.batches, acc.steps, ref.batches, ref.steps) == (4, 2, 2, 2)
    for step in range(2):
        for g_acc, g_ref in zip(acc.grads[step], ref.grads[step], strict=True):
            torch.testing.assert_close(g_acc, g_ref, rtol=1e-4, atol=1e-6)


def test_a_phase_starts_without_the_last_phases_unstepped_gradients(tiny_sample):
    from fastai.callback.core import Callback

    # 96 training images in micro-batches of 32, a step per 64: the frozen epoch ends with 32 images' gradients.
    config = _config(finetune=True, epochs=1, bs=64, accum=2, tta="none")
    learn = build_learner(image_dataloaders(train_items(tiny_sample), config), config)
    seen = {}

    class Grads(Callback):
        def before_fit(self):
            seen[self.index] = [p.grad for p in self.learn.model.parameters() if p.grad is not None and p.grad.any()]

    def peek(index, phase, start_epoch):
        callback = Grads()
        callback.index = index
        return [callback]

    with learn.no_bar(), learn.no_logging():
        fit(learn, config, phase_cbs=peek)
    assert learn.gradient_accumulation.count == 32  # the unfrozen epoch also ended with unstepped images
    assert seen == {0: [], 1: []}


# --- whole runs ---------------------------------------------------------------------------------------------


def test_channels_last_features_reach_the_head_channels_first(tiny_sample):
    # timm's swin returns NHWC features; without the permute fastai's head fails on BatchNorm sizes.
    config = _config(arch="swin_tiny_patch4_window7_224", size=224, bs=2)
    dls = image_dataloaders(train_items(tiny_sample).iloc[:4], config)
    learn = build_learner(dls, config, "cpu")
    assert isinstance(learn.model[1][0], ChannelsFirst)
    xb, yb = dls.one_batch()
    with torch.no_grad():
        out = learn.model.eval()(xb)
    assert out.shape == (2, len(dls.vocab))


def test_train_run_writes_a_complete_run_folder(tiny_sample, tmp_path):
    out = tmp_path / "run"
    result = train_run(tiny_sample, _config(accum=2), out)
    for name in (run_folder.CONFIG, run_folder.METRICS, run_folder.PLOT, run_folder.MODEL, run_folder.VOCAB,
                 run_folder.RESULT):
        assert (out / name).is_file(), name
    assert not (out / run_folder.CHECKPOINTS).exists()
    vocab = run_folder.read_vocab(out)["label"]
    valid = run_folder.read_probs(run_folder.valid_probs_path(out), vocab=vocab)
    test = run_folder.read_probs(run_folder.test_probs_path(out), vocab=vocab)
    np.testing.assert_allclose(valid.probs.sum(axis=1), 1.0, atol=1e-4)
    assert test.image_ids == tuple(folder.test_items(tiny_sample)["image_id"])
    assert set(valid.true) <= set(vocab) and len(valid.image_ids) == 24  # 20% of 120
    stored = json.loads((out / run_folder.CONFIG).read_text())
    assert stored["accum"] == 2 and stored["valid_seed"] == 42 and "fastai" in stored["versions"]
    assert result["epochs"] == 1 and set(result["valid_error_tta"]) == {"label"}
    again = train_run(tiny_sample, _config(accum=2), out)
    assert again["skipped"] is True  # a complete run folder is never retrained
    with pytest.raises(ConfigError, match=r"different config \(arch\)"):
        train_run(tiny_sample, _config(accum=2, arch="test_resnet"), out)


def test_split_probs_needs_a_vocab_per_target():
    probs = torch.cat([torch.full((2, 2), 1 / 2), torch.full((2, 3), 1 / 3)], dim=1)  # two heads' probabilities
    assert set(split_probs(probs, {"label": "ab", "variety": "xyz"}, ("label", "variety"))) == {"label",
                                                                                                    "variety"}
    with pytest.raises(ConfigError, match="no vocab for target.*variety"):
        split_probs(probs, {"label": "abcde"}, ("label", "variety"))
    with pytest.raises(ConfigError, match="head sizes must be positive"):
        split_probs(torch.ones((2, 1)), {"label": ""}, ("label",))


def _fake_run_folder(out, config, complete):
    """A run folder as train_run leaves it: config.json, and result.json when complete (no training needed)."""
    out.mkdir(parents=True)
    (out / run_folder.CONFIG).write_text(json.dumps(config.to_dict()))
    if complete:
        (out / run_folder.RESULT).write_text(json.dumps({"run": config.run_name, "epochs": 1}))


def test_a_complete_run_is_skipped_after_its_accum_was_rewritten(tiny_sample, tmp_path):
    from paddy.core.plan import Plan

    member = _config(accum=1)
    _fake_run_folder(tmp_path / "runs" / member.run_name, member, complete=True)
    results = train_plan(tiny_sample, Plan(members=(member.replace(accum=2),)), tmp_path / "runs")
    assert results[0]["skipped"] is True  # same effective batch: the probe's new accum does not invalidate it


def test_a_plan_checks_every_run_folder_before_training(tiny_sample, tmp_path):
    from paddy.core.plan import Plan

    first, second = _config(name="first"), _config(name="second")
    _fake_run_folder(tmp_path / "runs" / "second", second.replace(epochs=5), complete=False)
    with pytest.raises(ConfigError, match=r"second holds a run with a different config \(epochs\)"):
        train_plan(tiny_sample, Plan(members=(first, second)), tmp_path / "runs")
    assert not (tmp_path / "runs" / "first").exists()  # refused before the first member trained


def test_an_auto_accum_run_resumes_at_its_stored_accum_without_probing(tiny_sample, tmp_path):
    out = tmp_path / "run"
    _fake_run_folder(out, _config(accum=2), complete=False)
    # A probe could not fit anything in this budget: the run only trains if it takes accum 2 from config.json.
    result = train_run(tiny_sample, _config(accum="auto"), out, budget_gb=1e-9)
    assert result["accum"] == 2 and json.loads((out / run_folder.CONFIG).read_text())["accum"] == 2


class Killed(Exception):
    """Stands in for a kill after the first epoch's checkpoint."""


def _kill_after_first_epoch():
    from fastai.callback.core import Callback

    class KillAfterFirstEpoch(Callback):
        order = 90  # after the run's own epoch saver

        def after_epoch(self):
            raise Killed("killed after the first epoch")

    return KillAfterFirstEpoch()


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_epoch(tiny_sample, tmp_path):
    out, config = tmp_path / "run", _config(epochs=2, tta="none")
    with pytest.raises(Killed):
        train_run(tiny_sample, config, out, cbs=[_kill_after_first_epoch()])
    assert not run_folder.is_complete(out)
    first = read_metrics(out)
    assert len(first) == 1 and list((out / run_folder.CHECKPOINTS).glob("*.pth"))
    with pytest.raises(ConfigError, match=r"different config \(lr\)"):
        train_run(tiny_sample, config.replace(lr=0.5), out)
    result = train_run(tiny_sample, config, out)
    assert result["resumed_from"] == [0, 1]
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0] == first[0]


def _final_weights():
    from fastai.callback.core import Callback

    class FinalWeights(Callback):
        def after_fit(self):
            self.state = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}

    return FinalWeights()


@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    {},
    # 96 training images in micro-batches of 32: each epoch ends with 32 samples' gradients not yet stepped.
    {"bs": 64, "accum": 2},
    # Killed after the frozen epoch, which left 32 samples' gradients unstepped: the unfrozen phase starts afresh.
    {"bs": 64, "accum": 2, "finetune": True},
], ids=["plain", "accumulation-across-epochs", "accumulation-across-phases"])
def test_resumed_run_continues_exactly_like_an_uninterrupted_one(tiny_sample, tmp_path, changes):
    # Batch order (the train DataLoader's rng), augmentations and dropout (global RNGs), the optimizer state, the
    # running train loss and unstepped gradients must all continue.
    config = _config(epochs=2, tta="none", **changes)
    whole = _final_weights()
    train_run(tiny_sample, config, tmp_path / "whole", cbs=[whole])
    out = tmp_path / "resumed"
    with pytest.raises(Killed):  # killed rather than shortened: fit_one_cycle's schedule depends on the epochs
        train_run(tiny_sample, config, out, cbs=[_kill_after_first_epoch()])
    resumed = _final_weights()
    assert train_run(tiny_sample, config, out, cbs=[resumed])["resumed_from"] == [0, 1]
    for name, value in whole.state.items():
        torch.testing.assert_close(resumed.state[name], value, rtol=0, atol=0, msg=name)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(out)] == \
        [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / "whole")]
    vocab = run_folder.read_vocab(out)["label"]
    for path in (run_folder.valid_probs_path, run_folder.test_probs_path):
        np.testing.assert_array_equal(run_folder.read_probs(path(out), vocab=vocab).probs,
                                      run_folder.read_probs(path(tmp_path / "whole"), vocab=vocab).probs)


def _checkpoint_spy():
    from fastai.callback.core import Callback

    class CheckpointSpy(Callback):
        order = 90  # after the run's own epoch saver

        def before_fit(self):
            self.seen = []

        def after_epoch(self):
            self.seen.append(sorted(p.name for p in (self.learn.path / run_folder.CHECKPOINTS).glob("*.pth")))

    return CheckpointSpy()


@pytest.mark.slow
def test_checkpoints_are_written_only_when_due_and_a_run_without_one_restarts(tiny_sample, tmp_path):
    every, spy = tmp_path / "every", _checkpoint_spy()
    train_run(tiny_sample, _config(epochs=2, tta="none"), every, cbs=[spy])
    assert spy.seen == [["0-train-0.pth"], ["0-train-1.pth"]]  # checkpoint_every=0: each epoch
    short, spy = tmp_path / "short", _checkpoint_spy()
    config = _config(epochs=2, tta="none", checkpoint_every=TrainConfig(arch="x").checkpoint_every)
    with pytest.raises(Killed):  # the default interval: a run this short writes no checkpoint at all
        train_run(tiny_sample, config, short, cbs=[spy, _kill_after_first_epoch()])
    assert spy.seen == [[]] and len(read_metrics(short)) == 1
    result = train_run(tiny_sample, config, short)  # nothing to resume from: it starts again, whole
    assert result["resumed_from"] == [0, 0] and [r["epoch"] for r in read_metrics(short)] == [0, 1]
    assert read_metrics(short)[1]["train_loss"] == read_metrics(every)[1]["train_loss"]


@pytest.mark.slow
def test_a_checkpoint_without_saved_state_still_resumes_with_a_warning(tiny_sample, tmp_path, caplog):
    out, config = tmp_path / "run", _config(epochs=2, tta="none")
    with pytest.raises(Killed):
        train_run(tiny_sample, config, out, cbs=[_kill_after_first_epoch()])
    (state,) = (out / run_folder.CHECKPOINTS).glob(f"*{STATE_SUFFIX}")  # only the latest is kept
    state.unlink()  # as a checkpoint folder written before random states were saved
    with caplog.at_level(logging.WARNING, logger="paddy.vision.checkpoint"):
        result = train_run(tiny_sample, config, out)
    assert result["resumed_from"] == [0, 1] and run_folder.is_complete(out)
    (record,) = [r for r in caplog.records if r.name == "paddy.vision.checkpoint"]
    assert "not continue bit-exactly" in record.getMessage() and len(record.getMessage().splitlines()) == 1


@pytest.mark.slow
def test_two_target_run_writes_both_heads(tiny_sample, tmp_path):
    out = tmp_path / "run"
    train_run(tiny_sample, _config(targets=("label", "variety"), target_weights=(1, 0.5)), out)
    vocabs = run_folder.read_vocab(out)
    for target in ("label", "variety"):
        probs = run_folder.read_probs(run_folder.valid_probs_path(out, target), vocab=vocabs[target])
        np.testing.assert_allclose(probs.probs.sum(axis=1), 1.0, atol=1e-4)
        run_folder.read_probs(run_folder.test_probs_path(out, target), vocab=vocabs[target])
    assert {"label_error", "variety_error"} <= set(read_metrics(out)[0])


# --- the command line ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_trains_one_run(tiny_sample, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--item-size", "64,48",
                 "--epochs", "1", "--bs", "8", "--accum", "4", "--no-finetune", "--no-pretrained", "--tta", "none",
                 "--workers", "0", "--device", "cpu", "--out", str(out)])
    assert code == 0 and run_folder.is_complete(out)
    assert "resnet10t" in capsys.readouterr().out
    assert json.loads((out / run_folder.CONFIG).read_text())["accum"] == 4


@pytest.mark.parametrize("args, message", [
    (["--arch", "resnet10q", "--size", "32"], "unknown timm architecture 'resnet10q'"),
    (["--arch", "resnet10t", "--size", "32", "--accum", "3"], "accum must be a power of two"),
    (["--arch", "resnet10t", "--size", "32", "--accum", "16", "--bs", "8"], "no larger than bs=8"),
    (["--arch", "resnet10t", "--size", "32", "--targets", "label,colour"], "unknown target"),
    (["--arch", "resnet10t", "--size", "32", "--workers", "0"], "could not load pretrained weights"),
])
def test_cli_bad_input_leaves_no_run_folder(tiny_sample, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", str(tiny_sample), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_bad_size_is_a_usage_error(tiny_sample, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tiny_sample), "--arch", "resnet10t", "--size", "0", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_rejected_data_folder_leaves_no_run_folder(tiny_sample, tmp_path, capsys):
    damaged = shutil.copytree(tiny_sample, tmp_path / "data")
    victim = sorted((damaged / "train_images").glob("*/*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated JPEG
    out = tmp_path / "run"
    code = main(["train", str(damaged), "--arch", "resnet10t", "--size", "32", "--no-pretrained", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "paddy check" in err
    assert not out.exists()


def test_cli_bad_plan_leaves_no_runs(tiny_sample, tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[members]]\narch = "resnet10t"\nsize = 32\ncolour = "red"\n')
    runs = tmp_path / "runs"
    assert main(["train", str(tiny_sample), "--plan", str(plan), "--runs", str(runs)]) == 2
    assert "unknown key(s) colour" in capsys.readouterr().err
    plan.write_text('[[members]]\narch = "resnet10q"\nsize = 32\n')
    assert main(["train", str(tiny_sample), "--plan", str(plan), "--runs", str(runs)]) == 2
    assert "resnet10q" in capsys.readouterr().err
    assert not runs.exists()


def test_cli_plan_refuses_single_run_flags_and_overrides_device_and_workers(tiny_sample, tmp_path, capsys):
    from paddy.cli.main import build_parser
    from paddy.cli.train import _plan

    runs = tmp_path / "runs"
    for flags in (["--epochs", "3"], ["--tta", "flip"], ["--no-pretrained"], ["--out", str(tmp_path / "x")]):
        assert main(["train", str(tiny_sample), "--plan", "tiny", "--runs", str(runs), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert flags[0] in err and "--plan" in err and len(err.splitlines()) == 1
    assert not runs.exists()
    args = build_parser().parse_args(["train", str(tiny_sample), "--plan", "tiny", "--runs", str(runs),
                                      "--device", "cpu", "--workers", "1"])
    members = _plan(args).members
    assert [(m.device, m.num_workers) for m in members] == [("cpu", 1)] * len(members)


@pytest.mark.slow
def test_tiny_plan_trains_every_member_then_skips(tiny_sample, tmp_path):
    from paddy.core.plan import load_plan

    def live_learners():
        gc.collect()
        return sum(isinstance(o, Learner) for o in gc.get_objects())

    from fastai.learner import Learner

    plan = load_plan("tiny")
    before = live_learners()
    results = train_plan(tiny_sample, plan, tmp_path / "runs")
    assert live_learners() == before  # every member's learner was released
    assert [r["run"] for r in results] == [m.run_name for m in plan.members]
    assert all(run_folder.is_complete(tmp_path / "runs" / m.run_name) for m in plan.members)
    assert all(r.get("skipped") for r in train_plan(tiny_sample, plan, tmp_path / "runs"))
