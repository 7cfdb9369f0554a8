"""K-fold training: one ordinary run folder per fold, folds.csv shared, the member assembled once all K are done."""

import json

import numpy as np
import pandas as pd
import pytest
from fastai.callback.core import Callback

from paddy.cli.main import main
from paddy.core import oof, run_folder
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError, DataError
from paddy.core.plan import Plan
from paddy.data.array_cache import write_array_cache
from paddy.data.folder import train_items
from paddy.data.folds import FOLDS_CSV, ensure_folds, read_folds
from paddy.vision.run import train_member, train_plan


def _config(**changes):
    base = dict(arch="resnet10t", size=32, item_size=(64, 48), bs=16, epochs=1, finetune=False, pretrained=False,
                num_workers=0, device="cpu", tta="none", folds=3, name="r10")
    return TrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_folds_train_one_by_one_and_the_member_appears_with_the_last(tiny_sample, tmp_path, capsys):
    runs = tmp_path / "runs"
    member = runs / "r10"
    config = _config(name="")  # as the command line below makes it
    for fold in (2, 0):
        results = train_member(tiny_sample, config, member, fold=fold)
        assert [r["run"] for r in results] == [f"{config.run_name}/fold-{fold}"]
        assert not oof.is_oof_member(member)
    assert (runs / FOLDS_CSV).is_file()
    code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--item-size", "64,48",
                 "--epochs", "1", "--bs", "16", "--no-finetune", "--no-pretrained", "--tta", "none", "--workers", "0",
                 "--device", "cpu", "--folds", "3", "--fold", "1", "--out", str(member)])
    assert code == 0 and oof.is_oof_member(member)
    assert f"{config.run_name}/fold-1" in capsys.readouterr().out
    folds = read_folds(runs)
    held = oof.read_oof(member)
    assert sorted(held.image_ids) == sorted(folds.image_ids)  # every training image exactly once
    assert dict(zip(held.image_ids, held.folds)) == folds.fold_of()
    for fold in range(3):
        valid = run_folder.read_probs(run_folder.valid_probs_path(oof.fold_dir(member, fold)))
        assert {folds.fold_of()[i] for i in valid.image_ids} == {fold}  # a fold's validation set is that fold
    test = run_folder.read_probs(run_folder.test_probs_path(member))
    np.testing.assert_allclose(test.probs.sum(axis=1), 1.0, atol=1e-4)
    result = json.loads((member / run_folder.RESULT).read_text())
    assert result["folds"] == 3 and result["n_oof"] == len(folds.image_ids) == 120
    again = train_member(tiny_sample, config, member)
    assert again[0]["skipped"] and len(again) == 1


@pytest.mark.parametrize("changes, fold, words", [
    ({"folds": 41}, None, "smallest class"),  # the tiny sample's smallest class has fewer images
    ({}, 3, "fold must be 0..2"),
    ({}, -1, "fold must be 0..2"),
])
def test_bad_folds_write_nothing(tiny_sample, tmp_path, changes, fold, words):
    runs = tmp_path / "runs"
    with pytest.raises((ConfigError, DataError), match=words):
        train_member(tiny_sample, _config(**changes), runs / "r10", fold=fold)
    assert not runs.exists()


def test_folds_below_two_are_refused():
    for folds in (1, 0, 2.0, "3"):
        with pytest.raises(ConfigError, match="folds"):
            _config(folds=folds)


def test_cli_fold_without_folds_is_refused(tiny_sample, tmp_path, capsys):
    code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--fold", "1", "--out", str(tmp_path / "r")])
    assert code == 2 and "--fold I needs --folds K" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_members_of_a_plan_must_share_folds(tiny_sample, tmp_path):
    plan = Plan(members=(_config(), _config(name="other", folds=4)))
    with pytest.raises(ConfigError, match="same folds and split_seed"):
        train_plan(tiny_sample, plan, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_another_train_csv_under_the_same_runs_is_refused(tiny_sample, tmp_path):
    runs = tmp_path / "runs"
    items = pd.DataFrame({"image_id": [f"{i}.jpg" for i in range(30)], "label": ["a", "b", "c"] * 10})
    ensure_folds(runs, items, 3, seed=42)
    with pytest.raises(DataError, match="another train.csv"):
        train_member(tiny_sample, _config(), runs / "r10", fold=0)
    assert not (runs / "r10").exists()


def test_a_single_split_run_folder_is_not_taken_for_a_member(tmp_path, tiny_sample):
    member = tmp_path / "runs" / "r10"
    member.mkdir(parents=True)
    (member / run_folder.CONFIG).write_text(json.dumps(_config(folds=None).to_dict()))
    with pytest.raises(ConfigError, match="without these 3 folds"):
        train_member(tiny_sample, _config(), member)


class Killed(Exception):
    """Stands in for a kill after a fold's first epoch checkpoint."""


class KillAfterFirstEpoch(Callback):
    order = 90  # after the run's own epoch saver

    def after_epoch(self):
        raise Killed("killed after the first epoch")


@pytest.mark.slow
def test_a_killed_fold_resumes_and_the_member_is_never_read_unfinished(tiny_sample, tmp_path, capsys):
    member = tmp_path / "runs" / "r10"
    config = _config(folds=2, epochs=2, checkpoint_every=0)  # a checkpoint every epoch, so the kill leaves one
    with pytest.raises(Killed):
        train_member(tiny_sample, config, member, cbs=[KillAfterFirstEpoch()])
    assert not run_folder.is_complete(oof.fold_dir(member, 0)) and not oof.is_oof_member(member)
    code = main(["ensemble", str(member), "--data", str(tiny_sample), "--out", str(tmp_path / "x.csv")])
    assert code == 2 and "unfinished" in capsys.readouterr().err
    results = train_member(tiny_sample, config, member)
    assert [r.get("resumed_from") for r in results[:2]] == [[0, 1], [0, 0]]
    assert oof.is_oof_member(member)


@pytest.mark.slow
def test_folds_train_from_an_array_cache_and_share_the_folders_folds(tiny_sample, tmp_path):
    cache = tmp_path / "cache"
    write_array_cache(tiny_sample, cache, (64, 48), "squish", workers=1, progress=False)
    runs = tmp_path / "runs"
    ensure_folds(runs, train_items(tiny_sample), 2, seed=42)  # made from the JPEG folder: the cache matches it
    results = train_member(cache, _config(folds=2, item_size=None), runs / "r10")
    assert len(results) == 3 and oof.is_oof_member(runs / "r10")
    assert sorted(oof.read_oof(runs / "r10").image_ids) == sorted(read_folds(runs).image_ids)
    assert json.loads((runs / "r10" / run_folder.CONFIG).read_text())["item_size"] == [64, 48]
