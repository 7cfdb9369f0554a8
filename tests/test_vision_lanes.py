"""Lanes: plan members trained as separate processes give the results of one after the other; a failed lane
costs only its own run."""

import json

import numpy as np
import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core import run_folder
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.core.plan import Plan
from paddy.vision.lanes import LOG_DIR, count_lanes, lane_env, train_plan_lanes


def _member(name, **changes):
    base = dict(arch="resnet10t", size=32, item_size=(64, 48), bs=16, epochs=1, finetune=False, pretrained=False,
                num_workers=0, device="cpu", tta="none", name=name)
    return TrainConfig(**{**base, **changes})


def test_count_lanes():
    assert count_lanes("auto", "cuda", jobs=8, gpus=2) == 2
    assert count_lanes("auto", "cuda", jobs=1, gpus=2) == 1  # never more lanes than runs
    assert count_lanes("auto", "cpu", jobs=8, gpus=0) == 1  # CPU: one after the other, as before lanes
    assert count_lanes("3", "cpu", jobs=8, gpus=0) == 3  # N CPU processes when asked
    with pytest.raises(ConfigError, match="needs 3 GPUs"):
        count_lanes(3, "cuda", jobs=8, gpus=2)
    with pytest.raises(ConfigError, match="lanes must be"):
        count_lanes("two", "cpu", jobs=8)


def test_lane_env_gives_each_lane_its_gpu_or_its_cpu_share():
    assert lane_env(1, 2, "cuda", base={})["CUDA_VISIBLE_DEVICES"] == "1"
    assert lane_env(1, 2, "cuda", base={"CUDA_VISIBLE_DEVICES": "4,6"})["CUDA_VISIBLE_DEVICES"] == "6"
    assert int(lane_env(0, 2, "cpu", base={})["OMP_NUM_THREADS"]) >= 1


def _probs(run):
    return pd.read_csv(run_folder.valid_probs_path(run)).drop(columns=["image_id", "target"]).to_numpy()


@pytest.mark.slow
def test_two_lanes_give_the_results_of_one_after_the_other(tiny_sample, tmp_path):
    plan = Plan(members=(_member("first"), _member("second", seed=7, arch="test_convnext", size=(32, 32))))
    one = train_plan_lanes(tiny_sample, plan, tmp_path / "one", lanes=1)
    two = train_plan_lanes(tiny_sample, plan, tmp_path / "two", lanes=2)
    assert [r["run"] for r in two] == ["first", "second"] and sorted(r["lane"] for r in two) == [0, 1]
    for a, b in zip(one, two):
        assert a["last_epoch"]["train_loss"] == pytest.approx(b["last_epoch"]["train_loss"], abs=1e-5)
        np.testing.assert_allclose(_probs(tmp_path / "one" / a["run"]), _probs(tmp_path / "two" / b["run"]),
                                   atol=1e-5)
    assert (tmp_path / "two" / LOG_DIR / "first.log").is_file()
    again = train_plan_lanes(tiny_sample, plan, tmp_path / "two", lanes=2)  # complete runs are skipped
    assert all(r["skipped"] for r in again)


@pytest.mark.slow
def test_a_failed_lane_does_not_lose_the_other_run(tiny_sample, tmp_path, capsys):
    plan_file = tmp_path / "plan.toml"
    # The second member asks for pretrained weights that cannot be downloaded here: its lane fails at build time.
    plan_file.write_text('accelerator = "cpu"\n[defaults]\narch = "resnet10t"\nsize = 32\nitem_size = [64, 48]\n'
                         'bs = 16\nepochs = 1\nfinetune = false\nnum_workers = 0\ntta = "none"\n'
                         '[[members]]\nname = "good"\npretrained = false\n[[members]]\nname = "bad"\n')
    runs = tmp_path / "runs"
    code = main(["train", str(tiny_sample), "--plan", str(plan_file), "--runs", str(runs), "--device", "cpu",
                 "--lanes", "2"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 of 2 runs failed (bad)" in err
    good, bad = out.strip().splitlines()
    assert good.startswith("good: 1 epochs") and "[lane " in good
    assert bad.startswith("bad: FAILED") and "pretrained weights" in bad and str(runs / LOG_DIR / "bad.log") in bad
    assert run_folder.is_complete(runs / "good") and not run_folder.is_complete(runs / "bad")
    assert json.loads((runs / "good" / run_folder.RESULT).read_text())["run"] == "good"


def test_lanes_need_a_plan(tiny_sample, tmp_path, capsys):
    code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--out", str(tmp_path / "x"), "--lanes", "2"])
    assert code == 2 and "--lanes applies to a plan" in capsys.readouterr().err


@pytest.mark.slow
def test_a_k_fold_member_is_one_lane_training_all_its_folds(tiny_sample, tmp_path):
    from paddy.core import oof

    plan = Plan(members=(_member("folded", folds=2, epochs=1), _member("plain")))
    results = train_plan_lanes(tiny_sample, plan, tmp_path / "runs", lanes=2)
    assert [r["run"] for r in results] == ["folded", "plain"] and not any(r.get("failed") for r in results)
    assert oof.is_oof_member(tmp_path / "runs" / "folded") and (tmp_path / "runs" / "folds.csv").is_file()
    assert all(run_folder.is_complete(oof.fold_dir(tmp_path / "runs" / "folded", i)) for i in range(2))
