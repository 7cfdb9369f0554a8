"""Runs from an array cache: the default item size, the run folder, config.json's source, the CLI verbs
(resize, check, train, ensemble)."""

import json

import numpy as np
import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core import run_folder
from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.core.plan import Plan
from paddy.data import folder, source
from paddy.data.sample import make_sample
from paddy.probe.run import run_probe
from paddy.vision.run import train_plan, train_run


def _config(**changes):
    base = dict(arch="resnet10t", size=32, item_size=(40, 32), bs=8, epochs=1, finetune=False, pretrained=False,
                num_workers=0, device="cpu", tta="flip")
    return TrainConfig(**{**base, **changes})


def test_item_size_defaults_from_the_data_never_above_it(tiny_sample, tiny_cache, tmp_path):
    assert TrainConfig(arch="resnet10t").item_size is None
    assert TrainConfig(arch="resnet10t").run_name == "resnet10t-squishauto-224x224"
    assert source.data_item_size(tiny_cache) == (40, 32)  # the cache's own
    assert source.data_item_size(tiny_sample) == (64, 48)  # 48x64 images: their size, not 480
    big = make_sample(tmp_path / "big", n_train=12, n_test=2, size=(600, 720))
    assert source.data_item_size(big) == (480, 480)  # the notebooks' 480 at most
    assert source.resolve_item_size(tiny_cache, _config(item_size=None)).item_size == (40, 32)
    assert source.resolve_item_size(tiny_cache, _config(item_size=(8, 8))).item_size == (8, 8)  # given: kept


def test_train_from_the_array_cache_writes_a_complete_run_folder(tiny_sample, tiny_cache, tmp_path):
    out = tmp_path / "run"
    result = train_run(tiny_cache, _config(item_size=None, targets=("label", "variety")), out)
    for name in (run_folder.CONFIG, run_folder.METRICS, run_folder.PLOT, run_folder.MODEL, run_folder.VOCAB,
                 run_folder.RESULT):
        assert (out / name).is_file(), name
    assert not (out / run_folder.CHECKPOINTS).exists()
    for target in ("label", "variety"):
        vocab = run_folder.read_vocab(out)[target]
        valid = run_folder.read_probs(run_folder.valid_probs_path(out, target), vocab=vocab)
        test = run_folder.read_probs(run_folder.test_probs_path(out, target), vocab=vocab)
        np.testing.assert_allclose(test.probs.sum(axis=1), 1.0, atol=1e-4)
        assert test.image_ids == tuple(folder.test_items(tiny_sample)["image_id"])
        assert len(valid.image_ids) == 24  # the JPEG path's split: 20% of 120
    stored = json.loads((out / run_folder.CONFIG).read_text())
    assert stored["item_size"] == [40, 32] and stored["run_name"] == result["run"]
    assert stored["source"]["kind"] == "array-cache" and stored["source"]["source"] == str(tiny_sample.resolve())
    assert train_run(tiny_cache, _config(item_size=None, targets=("label", "variety")), out)["skipped"] is True


def test_a_run_at_another_item_size_is_refused_and_writes_nothing(tiny_cache, tmp_path):
    with pytest.raises(DataError, match="holds items of 40x32, the run asks for 64x48"):
        train_run(tiny_cache, _config(item_size=(64, 48)), tmp_path / "run")
    with pytest.raises(DataError, match="holds squish items, the run asks for crop"):
        train_plan(tiny_cache, _plan(_config(item_size=None), _config(item_method="crop")), tmp_path / "runs")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def _plan(*members):
    return Plan(members=members)


def test_probe_reads_the_array_cache(tiny_cache):
    report = run_probe(tiny_cache, [_config(item_size=None, bs=8)], budget_gb=64, use_subprocess=False, max_images=12,
                       progress=False, device="cpu")
    assert report.chosen[_config(item_size=None, bs=8).run_name] == 1


def test_cli_resize_check_and_train_from_an_array_cache(tiny_sample, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["resize", str(tiny_sample), str(out), "--format", "array", "--item-size", "40,32"]) == 0
    assert "wrote the array cache" in capsys.readouterr().out
    assert main(["check", str(out)]) == 0
    assert "an array cache: arrays whole, source unchanged" in capsys.readouterr().out
    assert main(["train", str(out), "--arch", "resnet10t", "--size", "32", "--epochs", "1", "--bs", "8",
                 "--no-pretrained", "--no-finetune", "--tta", "none", "--device", "cpu", "--workers", "0",
                 "--out", str(tmp_path / "run")]) == 0
    assert "resnet10t-squish40x32-32x32: 1 epochs" in capsys.readouterr().out
    submission = tmp_path / "submissions" / "one.csv"
    assert main(["ensemble", str(tmp_path / "run"), "--data", str(out), "--out", str(submission)]) == 0
    assert list(pd.read_csv(submission)["image_id"]) == list(folder.test_items(tiny_sample)["image_id"])
    capsys.readouterr()
    with open(out / "test.npy", "r+b") as handle:
        handle.truncate(1000)
    assert main(["check", str(out)]) == 2
    err = capsys.readouterr().err
    assert "test.npy is 1000 bytes" in err and "truncated" in err


@pytest.mark.parametrize("argv, message", [
    (["--format", "array"], "--format array takes --item-size"),
    (["--format", "array", "--item-size", "8", "--max-size", "8"], "--format array takes --item-size"),
    (["--item-size", "8,8"], "a JPEG cache takes --max-size"),
])
def test_cli_resize_flags_that_do_not_go_together(tiny_sample, tmp_path, capsys, argv, message):
    assert main(["resize", str(tiny_sample), str(tmp_path / "c"), *argv]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "c").exists()

