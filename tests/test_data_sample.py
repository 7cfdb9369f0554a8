"""paddy sample: layout, proportions, ids, determinism, bad input, and that a tiny CNN can learn both targets."""

import filecmp

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paddy.cli.main import main
from paddy.core.errors import ConfigError, DataError
from paddy.data import competition
from paddy.data.sample import make_sample, parse_wxh, proportional_counts


def test_layout_ids_and_csvs(tiny_sample):
    train = pd.read_csv(tiny_sample / competition.TRAIN_CSV)
    sub = pd.read_csv(tiny_sample / competition.SAMPLE_SUBMISSION_CSV, keep_default_na=False)
    assert tuple(train.columns) == competition.TRAIN_COLUMNS
    assert tuple(sub.columns) == competition.SUBMISSION_COLUMNS
    assert list(train.image_id) == [f"{100000 + i}.jpg" for i in range(120)]
    assert list(sub.image_id) == [f"{200001 + i}.jpg" for i in range(16)]
    assert (sub.label == "").all()
    assert set(train.label) == set(competition.LABEL_COUNTS)
    assert set(train.variety) == set(competition.VARIETY_COUNTS)
    assert set(train.age) <= set(competition.AGES)
    for row in train.itertuples():
        with Image.open(tiny_sample / competition.TRAIN_IMAGES / row.label / row.image_id) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (48, 64), "RGB")
    assert sorted(p.name for p in (tiny_sample / competition.TEST_IMAGES).iterdir()) == list(sub.image_id)


def test_real_proportions(tiny_sample):
    train = pd.read_csv(tiny_sample / competition.TRAIN_CSV)
    assert train.label.value_counts().to_dict() == proportional_counts(120, competition.LABEL_COUNTS)
    assert train.variety.value_counts().to_dict() == proportional_counts(120, competition.VARIETY_COUNTS)
    big = proportional_counts(10407, competition.LABEL_COUNTS)
    assert big == competition.LABEL_COUNTS  # at the real size the counts are the real ones


@pytest.mark.parametrize("n", [1, 3, 10, 11, 57, 200, 1000])
def test_proportional_counts(n):
    counts = proportional_counts(n, competition.VARIETY_COUNTS)
    assert sum(counts.values()) == n
    if n >= 10:
        assert min(counts.values()) >= 1
    values = list(counts.values())  # in the order of the real counts, largest first
    assert values == sorted(values, reverse=True)
    if n >= 200:  # past the minimum of one each, the shares are the real ones to within rounding
        for name, count in counts.items():
            assert abs(count - n * competition.VARIETY_COUNTS[name] / competition.N_TRAIN) < 1.5


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_sample(tmp_path / "a", n_train=12, n_test=3, size=(32, 40), seed=7)
    b = make_sample(tmp_path / "b", n_train=12, n_test=3, size=(32, 40), seed=7)
    c = make_sample(tmp_path / "c", n_train=12, n_test=3, size=(32, 40), seed=8)
    compare = filecmp.dircmp(a, b)
    assert not compare.diff_files and not compare.left_only and not compare.right_only
    same_ab = filecmp.cmp(a / "test_images" / "200001.jpg", b / "test_images" / "200001.jpg", shallow=False)
    same_ac = filecmp.cmp(a / "test_images" / "200001.jpg", c / "test_images" / "200001.jpg", shallow=False)
    assert same_ab and not same_ac


def test_size_is_width_by_height(tmp_path):
    out = make_sample(tmp_path / "s", n_train=2, n_test=1, size=(40, 24))
    with Image.open(out / "test_images" / "200001.jpg") as image:
        assert image.size == (40, 24)
    assert parse_wxh("480x640") == (480, 640) and parse_wxh("64") == (64, 64)
    for bad in ("0x64", "-1x4", "axb", "1x2x3", ""):
        with pytest.raises(ConfigError):
            parse_wxh(bad)


def test_refuses_non_empty_out(tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError):
        make_sample(out, n_train=2, n_test=1, size=(16, 16))
    assert main(["sample", str(out), "--n-train", "2", "--n-test", "1", "--size", "16x16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert main(["sample", str(tmp_path / "empty"), "--n-train", "2", "--n-test", "1", "--size", "16x16"]) == 0


@pytest.mark.parametrize("args", [["--size", "0x64"], ["--size", "big"], ["--n-train", "0"], ["--n-test", "-3"]])
def test_cli_bad_values_exit_2(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "s"), *args])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_cli_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["sample", str(blocker / "data"), "--n-train", "2", "--n-test", "1", "--size", "16x16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_cli_writes_sample(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "s"), "--n-train", "11", "--n-test", "2", "--size", "24x32"]) == 0
    assert "11 train and 2 test images, 24x32" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "train_images").glob("*/*.jpg"))) == 11


def _load(folder):
    """Images as a float tensor, with label and variety indices."""
    import torch

    train = pd.read_csv(folder / competition.TRAIN_CSV)
    pixels = np.stack([np.asarray(Image.open(folder / competition.TRAIN_IMAGES / r.label / r.image_id))
                       for r in train.itertuples()])
    x = torch.tensor(pixels).permute(0, 3, 1, 2).float() / 255
    labels, varieties = list(competition.LABEL_COUNTS), list(competition.VARIETY_COUNTS)
    return (x, torch.tensor([labels.index(v) for v in train.label]),
            torch.tensor([varieties.index(v) for v in train.variety]))


def _tiny_cnn():
    from torch import nn

    body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten())  # max pool: small lesions must not average away
    return body, nn.Linear(64, 10), nn.Linear(64, 10)


def test_tiny_cnn_learns_disease_and_variety(tmp_path):
    import torch

    torch.manual_seed(0)
    label_acc, variety_acc, majority_label, majority_variety = _fit_and_score(tmp_path)  # one thread: conftest
    assert label_acc > majority_label + 0.4, (label_acc, majority_label)
    assert variety_acc > majority_variety + 0.15, (variety_acc, majority_variety)


def _fit_and_score(tmp_path):
    """Train the tiny CNN briefly on a sample; accuracies on held-out images and the majority baselines."""
    import torch
    from torch.nn.functional import cross_entropy

    x, y_label, y_variety = _load(make_sample(tmp_path / "s", n_train=300, n_test=1, size=(48, 64), seed=1))
    n_fit = 240
    body, head_label, head_variety = _tiny_cnn()
    params = [*body.parameters(), *head_label.parameters(), *head_variety.parameters()]
    opt = torch.optim.Adam(params, 3e-3)
    for _ in range(10):
        for batch in torch.randperm(n_fit).split(32):
            features = body(x[batch])
            loss = cross_entropy(head_label(features), y_label[batch]) + cross_entropy(
                head_variety(features), y_variety[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    body.eval()
    with torch.no_grad():
        features = body(x[n_fit:])
    label_acc = (head_label(features).argmax(1) == y_label[n_fit:]).float().mean().item()
    variety_acc = (head_variety(features).argmax(1) == y_variety[n_fit:]).float().mean().item()
    majority_label = (y_label[n_fit:] == 0).float().mean().item()  # "normal", the largest class
    majority_variety = (y_variety[n_fit:] == 0).float().mean().item()  # ADT45: about two thirds
    return label_acc, variety_acc, majority_label, majority_variety
