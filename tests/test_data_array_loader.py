"""DataLoaders over an array cache: the JPEG path's split, vocabs, shapes and batches; test_dl by id; WindowCrop."""

import pickle

import pytest
import torch
from fastai.torch_core import TensorImage

from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.data import array_cache, array_loader, folder, loaders


def _config(**changes):
    base = dict(arch="resnet10t", item_size=(40, 32), size=(32, 24), bs=16, num_workers=0, device="cpu",
                pretrained=False, targets=("label", "variety"))
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def both(tiny_sample, tiny_cache):
    """(JPEG-path DataLoaders, array-cache DataLoaders) for the same config."""
    config = _config()
    return (loaders.image_dataloaders(folder.train_items(tiny_sample), config),
            array_loader.array_dataloaders(tiny_cache, array_cache.cache_items(tiny_cache, "train"), config))


def _described(batch):
    return [(type(t).__name__, tuple(t.shape), t.dtype) for t in batch]


def test_same_split_vocabs_and_lengths_as_the_jpeg_path(both):
    jpeg, array = both
    targets = ("label", "variety")
    assert loaders.dataloader_vocabs(array, targets) == loaders.dataloader_vocabs(jpeg, targets)
    assert list(array.valid.items["image_id"]) == list(jpeg.valid.items["image_id"])
    assert sorted(array.train.items["image_id"]) == sorted(jpeg.train.items["image_id"])
    assert (len(array.train), len(array.valid), array.n_inp) == (len(jpeg.train), len(jpeg.valid), jpeg.n_inp)


def test_validation_batches_equal_the_jpeg_path(both):
    # Squish has no randomness and validation no augmentation: the same pixels, types and targets, bit for bit.
    jpeg, array = both
    jb, ab = jpeg.valid.one_batch(), array.valid.one_batch()
    assert _described(ab) == _described(jb)
    assert torch.equal(ab[0], jb[0]) and all(torch.equal(a, j) for a, j in zip(ab[1:], jb[1:], strict=True))


def test_training_batches_have_the_jpeg_paths_shapes_and_augmentation(both):
    jpeg, array = both
    assert _described(array.train.one_batch()) == _described(jpeg.train.one_batch())
    names = [type(t).__name__ for t in array.train.after_batch.fs]
    assert names[:2] == ["WindowCrop", "IntToFloatTensor"]
    assert names[2:] == [type(t).__name__ for t in jpeg.train.after_batch.fs][1:]  # the same aug_transforms


def test_test_dl_reads_the_test_array_by_image_id(tiny_sample, tiny_cache, both):
    jpeg, array = both
    jb = jpeg.test_dl(folder.test_items(tiny_sample)).one_batch()
    ab = array.test_dl(array_cache.cache_items(tiny_cache, "test")).one_batch()
    assert len(ab) == len(jb) == 1 and torch.equal(ab[0], jb[0])
    ids = ["200003.jpg", "200001.jpg"]  # any order, plain ids too
    assert torch.equal(array.test_dl(ids).one_batch()[0], jb[0][[2, 0]])
    with pytest.raises(DataError, match="nope.jpg is not in one split of the array cache"):
        array.test_dl(["nope.jpg"])


def test_workers_yield_the_same_batches(tiny_cache):
    items = array_cache.cache_items(tiny_cache, "train")
    one = array_loader.array_dataloaders(tiny_cache, items, _config())
    two = array_loader.array_dataloaders(tiny_cache, items, _config(num_workers=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one.valid, two.valid, strict=True))


def test_a_pickled_dataset_carries_no_pixels(both):
    dataset = both[1].train.dataset
    assert dataset.array.shape[1:] == (40, 32, 3)
    assert len(pickle.dumps(dataset)) < 40 * 32 * 3 * 10


def test_refuses_a_cache_of_another_item_size(tiny_cache):
    with pytest.raises(DataError, match="holds items of 40x32, the run asks for 48x48"):
        array_loader.array_dataloaders(tiny_cache, array_cache.cache_items(tiny_cache, "train"),
                                       _config(item_size=(48, 48)))


def test_window_crop_draws_per_item_in_training_and_centres_otherwise():
    stored = torch.arange(8 * 3 * 10 * 6, dtype=torch.int32).reshape(8, 3, 10, 6).to(torch.uint8)
    crop = array_loader.WindowCrop((6, 6))
    centre = crop(TensorImage(stored), split_idx=1)
    assert torch.equal(centre, stored[:, :, 2:8])
    torch.manual_seed(0)
    drawn = crop(TensorImage(stored), split_idx=0)
    tops = []
    for item in range(8):
        top = next(t for t in range(5) if torch.equal(drawn[item], stored[item, :, t:t + 6]))
        tops.append(top)
    assert len(set(tops)) > 1 and drawn.is_contiguous()
    same = array_loader.WindowCrop((10, 6))(TensorImage(stored.permute(0, 1, 3, 2).transpose(2, 3)), split_idx=0)
    assert torch.equal(same, stored) and same.is_contiguous()
