"""The data layer on a tiny sample folder: finding data, CSVs, items, the seeded split, DataLoaders."""

import random
import shutil

import pytest
import torch

from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.data import folder
from paddy.data.folder import (
    find_data,
    random_valid_mask,
    read_train_csv,
    smallest_class_items,
    split_mask,
    train_items,
    valid_mask,
)
from paddy.data.loaders import dataloader_vocabs, image_dataloaders


def _config(**changes):
    base = dict(arch="resnet10t", size=32, item_size=(64, 48), bs=8, pretrained=False, num_workers=0, device="cpu")
    return TrainConfig(**{**base, **changes})


@pytest.fixture
def sample_copy(tiny_sample, tmp_path):
    """A private copy of the sample folder that a test may damage."""
    return shutil.copytree(tiny_sample, tmp_path / "data")


def test_find_data_explicit_and_kaggle(tiny_sample, monkeypatch, tmp_path):
    assert find_data(tiny_sample) == tiny_sample
    with pytest.raises(DataError, match="not a folder"):
        find_data(tmp_path / "nope")
    with pytest.raises(DataError, match="no data folder given"):
        find_data(None)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    with pytest.raises(DataError, match="/kaggle/input/paddy-disease-classification"):
        find_data(None)  # on Kaggle the default is the competition's input folder (absent here)


def test_read_train_csv_errors(sample_copy):
    frame = read_train_csv(sample_copy)
    assert list(frame.columns) == ["image_id", "label", "variety", "age"]
    assert frame["image_id"].str.endswith(".jpg").all()
    csv = sample_copy / "train.csv"
    # A variety hole is fine for the disease target, an error for the variety target.
    lines = csv.read_text().splitlines()
    image_id, label, _, age = lines[1].split(",")
    csv.write_text("\n".join([lines[0], f"{image_id},{label},,{age}", *lines[2:]]) + "\n")
    assert len(read_train_csv(sample_copy)) == len(lines) - 1
    with pytest.raises(DataError, match=f"1 image.*no variety.*{image_id}"):
        read_train_csv(sample_copy, targets=("label", "variety"))
    csv.write_text("image_id,label,age\n" + "".join(f"{x},normal,50\n" for x in ("1.jpg", "2.jpg")))
    read_train_csv(sample_copy)
    with pytest.raises(DataError, match="lacks column.*variety"):
        read_train_csv(sample_copy, targets=("label", "variety"))
    csv.write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_train_csv(sample_copy)


def test_train_and_test_items(tiny_sample):
    items = train_items(tiny_sample)
    assert list(items.columns) == ["image_id", "label", "variety", "age", "path"]
    assert len(items) == 120 and items["image_id"].is_monotonic_increasing
    for row in items.itertuples():
        assert row.path.endswith(f"train_images/{row.label}/{row.image_id}")  # label from the folder
    csv = read_train_csv(tiny_sample).set_index("image_id")
    assert (csv.loc[items["image_id"], "variety"].to_numpy() == items["variety"].to_numpy()).all()
    tests = folder.test_items(tiny_sample)
    assert list(tests.columns) == ["image_id", "path"] and len(tests) == 16
    assert tests["image_id"].tolist() == sorted(tests["image_id"]) and tests["image_id"].iloc[0] == "200001.jpg"


def test_valid_mask_is_seeded_and_order_free():
    ids = [f"{100000 + i}.jpg" for i in range(200)]
    mask = valid_mask(ids, 0.2, seed=7)
    assert sum(mask) == 40
    chosen = {i for i, m in zip(ids, mask) if m}
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert {i for i, m in zip(shuffled, valid_mask(shuffled, 0.2, seed=7)) if m} == chosen
    assert valid_mask(ids, 0.2, seed=7) == mask
    assert {i for i, m in zip(ids, valid_mask(ids, 0.2, seed=8)) if m} != chosen


@pytest.mark.parametrize("n, valid_pct, seed", [(120, 0.2, 42), (7, 0.3, 0), (10407, 0.2, 42), (50, 0.25, 123)])
def test_random_split_picks_what_fastai_random_splitter_picks(n, valid_pct, seed):
    from fastai.data.transforms import RandomSplitter

    items = [f"{100000 + i}.jpg" for i in range(n)]
    _, valid = RandomSplitter(valid_pct=valid_pct, seed=seed)(items)
    mask = split_mask(items, valid_pct, seed, split="random")
    assert [i for i, m in enumerate(mask) if m] == sorted(valid)  # same images, for the same seed and order
    state = torch.get_rng_state()
    random_valid_mask(n, valid_pct, seed)
    assert torch.equal(torch.get_rng_state(), state)  # unlike RandomSplitter, the global generator is untouched


def test_dataloaders_random_split_uses_random_splitter_order(tiny_sample):
    from fastai.data.transforms import RandomSplitter

    items = train_items(tiny_sample)
    dls = image_dataloaders(items, _config(split="random", valid_pct=0.25, split_seed=3))
    _, valid = RandomSplitter(valid_pct=0.25, seed=3)(list(items["image_id"]))
    assert set(dls.valid.items["image_id"]) == set(items["image_id"].iloc[sorted(valid)])
    assert split_mask(list(items["image_id"]), 0.2, 42) == valid_mask(items["image_id"], 0.2, 42)  # hash: default


def test_smallest_class_items(tiny_sample):
    items = train_items(tiny_sample)
    smallest = smallest_class_items(items)
    assert smallest["label"].nunique() == 1
    assert len(smallest) == items["label"].value_counts().min()


def test_dataloaders_single_target(tiny_sample):
    items = train_items(tiny_sample)
    before = items.copy()
    config = _config(bs=8, accum=2)
    dls = image_dataloaders(items, config)
    assert items.equals(before)  # the caller's frame is not touched
    x, y = dls.train.one_batch()
    assert tuple(x.shape) == (4, 3, 32, 32) and tuple(y.shape) == (4,)  # micro-batch = bs // accum
    assert dataloader_vocabs(dls, config.targets) == {"label": tuple(sorted(items["label"].unique()))}
    expected = set(items["image_id"][valid_mask(items["image_id"], 0.2, 42)])
    assert set(dls.valid.items["image_id"]) == expected


def test_dataloaders_two_targets(tiny_sample):
    items = train_items(tiny_sample)
    config = _config(targets=("label", "variety"), size=(32, 24))
    dls = image_dataloaders(items, config)
    x, label, variety = dls.train.one_batch()
    assert tuple(x.shape) == (8, 3, 32, 24) and label.shape == variety.shape == (8,)
    vocabs = dataloader_vocabs(dls, config.targets)
    assert vocabs["variety"] == tuple(sorted(items["variety"].unique()))
    assert int(variety.max()) < len(vocabs["variety"])
    damaged = items.copy()
    damaged.loc[3, "variety"] = None
    with pytest.raises(DataError, match="no variety"):
        image_dataloaders(damaged, config)


def test_an_array_cache_splits_as_its_source_folder(tiny_sample, tmp_path):
    from paddy.data import source
    from paddy.data.array_cache import write_array_cache

    cache = tmp_path / "cache"
    write_array_cache(tiny_sample, cache, (32, 32), "squish", workers=1)
    for split in ("hash", "random"):
        config = _config(item_size=(32, 32), split=split, split_seed=5)
        from_cache = source.dataloaders(cache, source.train_items(cache), config)
        from_folder = image_dataloaders(train_items(tiny_sample), config)
        assert set(from_cache.valid.items["image_id"]) == set(from_folder.valid.items["image_id"]), split
