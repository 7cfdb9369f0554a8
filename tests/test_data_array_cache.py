"""The array cache: fastai's Resize geometry, its files, and every refusal (truncated, changed, other size/source)."""

import json
import os
import shutil

import numpy as np
import pytest
from fastai.vision.all import PILImage, Resize, ResizeMethod

from paddy.core.errors import ConfigError, DataError
from paddy.data import array_cache

METHODS = {"squish": ResizeMethod.Squish, "crop": ResizeMethod.Crop, "pad": ResizeMethod.Pad}


def _centre(stored, item_hw):
    top, left = (stored.shape[0] - item_hw[0]) // 2, (stored.shape[1] - item_hw[1]) // 2
    return stored[top:top + item_hw[0], left:left + item_hw[1]].astype(int)


def _fastai(path, item_hw, method):
    """What the JPEG path's item transform gives on validation (centred window)."""
    return np.asarray(Resize(item_hw, METHODS[method])(PILImage.create(path), split_idx=1)).astype(int)


def test_files_shapes_index_and_manifest(tiny_sample, tiny_cache):
    info = json.loads((tiny_cache / array_cache.MANIFEST).read_text())
    assert (info["format"], info["version"], info["source"]) == (array_cache.FORMAT, 1, str(tiny_sample.resolve()))
    assert (info["item_size"], info["item_method"], info["stored_size"]) == ([40, 32], "squish", [40, 32])
    train, test = np.load(tiny_cache / "train.npy", mmap_mode="r"), np.load(tiny_cache / "test.npy", mmap_mode="r")
    assert (train.shape, test.shape, train.dtype) == ((120, 40, 32, 3), (16, 40, 32, 3), np.uint8)
    assert info["arrays"]["train"]["bytes"] == (tiny_cache / "train.npy").stat().st_size
    items = array_cache.cache_items(tiny_cache, "train")
    assert list(items.columns) == ["image_id", "label", "variety", "age", "row"]
    assert list(items["row"]) == list(range(120)) and items["image_id"].is_monotonic_increasing
    assert list(array_cache.cache_items(tiny_cache, "test")["image_id"])[:2] == ["200001.jpg", "200002.jpg"]
    assert (tiny_cache / "train.csv").read_bytes() == (tiny_sample / "train.csv").read_bytes()
    assert (tiny_cache / "sample_submission.csv").is_file() and array_cache.is_array_cache(tiny_cache)


def test_rows_are_fastai_resize_of_their_image(tiny_sample, tiny_cache):
    items = array_cache.cache_items(tiny_cache, "train")
    train = np.load(tiny_cache / "train.npy", mmap_mode="r")
    for row in (0, 57, 119):
        image_id, label = items.loc[row, ["image_id", "label"]]
        path = tiny_sample / "train_images" / label / image_id
        assert np.array_equal(train[row].astype(int), _fastai(path, (40, 32), "squish"))


@pytest.mark.parametrize("method", ["crop", "pad"])
@pytest.mark.parametrize("item_hw", [(40, 40), (30, 50), (64, 48)])
def test_crop_and_pad_centre_window_is_fastai_resize(tiny_sample, tmp_path, method, item_hw):
    # Items of another aspect ratio are stored with the margin fastai's random window moves over; the centred
    # window is fastai's validation output, to within 1/255 away from its edge pixels.
    path = next((tiny_sample / "train_images").glob("*/*.jpg"))
    landscape = tmp_path / "landscape.jpg"
    PILImage.create(np.asarray(PILImage.create(path)).transpose(1, 0, 2).copy()).save(landscape, quality=95)
    stored_hw = array_cache.stored_size((48, 64), item_hw, method)
    for image in (path, landscape):
        stored = array_cache.transform_image(image, item_hw, method, stored_hw)
        assert stored.shape == (*stored_hw, 3)
        diff = np.abs(_centre(stored, item_hw) - _fastai(image, item_hw, method))
        assert diff[2:-2, 2:-2].max() <= 1 and diff.mean() < 0.5


def test_stored_size_adds_the_window_range_evenly():
    assert array_cache.stored_size((480, 640), (256, 192), "crop") == (256, 192)  # same aspect: no margin
    assert array_cache.stored_size((480, 640), (224, 224), "squish") == (224, 224)
    assert array_cache.stored_size((480, 640), (224, 224), "crop") == (298, 224)  # the window moves vertically
    assert array_cache.stored_size((480, 640), (224, 224), "pad") == (224, 280)  # the image moves sideways


def test_rerun_is_up_to_date_and_writes_nothing(tiny_sample, tiny_cache):
    before = (tiny_cache / "train.npy").stat().st_mtime_ns
    summary = array_cache.write_array_cache(tiny_sample, tiny_cache, (40, 32), "squish", workers=1, progress=False)
    assert summary.up_to_date and (tiny_cache / "train.npy").stat().st_mtime_ns == before
    assert "up to date" in summary.describe()


def test_parallel_workers_write_the_same_arrays(tiny_sample, tiny_cache, tmp_path):
    array_cache.write_array_cache(tiny_sample, tmp_path / "c", (40, 32), "squish", workers=2, progress=False)
    for split in array_cache.SPLITS:
        assert np.array_equal(np.load(tmp_path / "c" / f"{split}.npy"), np.load(tiny_cache / f"{split}.npy"))


def test_truncated_array_is_refused(tiny_cache, tmp_path):
    copy = shutil.copytree(tiny_cache, tmp_path / "c")
    with open(copy / "train.npy", "r+b") as handle:
        handle.truncate((copy / "train.npy").stat().st_size - 100)
    with pytest.raises(DataError, match=r"train.npy is \d+ bytes, the manifest says \d+ bytes \(truncated"):
        array_cache.require_cache(copy)
    with pytest.raises(DataError, match="truncated"):
        array_cache.open_array(copy, "train")
    assert array_cache.open_array(copy, "test").shape[0] == 16  # the intact split still opens


def test_changed_source_is_refused(tiny_sample, tmp_path):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    array_cache.write_array_cache(data, tmp_path / "c", (40, 32), "squish", workers=1, progress=False)
    assert array_cache.require_cache(tmp_path / "c")["item_method"] == "squish"
    image = next((data / "test_images").glob("*.jpg"))
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=f"the files in {data.resolve()} changed since .* remake it: paddy resize"):
        array_cache.require_cache(tmp_path / "c")
    array_cache.require_cache(tmp_path / "c", check_source=False)  # e.g. a copy that travelled without its source
    shutil.rmtree(data)  # a source that is not here cannot be compared: the cache serves as it is
    array_cache.require_cache(tmp_path / "c")


def test_other_item_size_or_method_is_refused_in_one_line(tiny_cache):
    with pytest.raises(DataError, match="holds items of 40x32, the run asks for 64x64: train with --item-size 40,32"):
        array_cache.require_cache(tiny_cache, item_size=(64, 64))
    with pytest.raises(DataError, match="holds squish items, the run asks for crop"):
        array_cache.require_cache(tiny_cache, item_method="crop")
    with pytest.raises(DataError, match=r"\(and 1 more\)"):
        array_cache.require_cache(tiny_cache, item_size=(64, 64), item_method="crop")


def test_cache_of_another_folder_is_refused(tiny_sample, tiny_cache, tmp_path):
    with pytest.raises(DataError, match=f"is a cache of {tiny_sample.resolve()}, not"):
        array_cache.require_cache(tiny_cache, source=tmp_path)
    other = shutil.copytree(tiny_sample, tmp_path / "other")
    with pytest.raises(DataError, match=f"is an array cache of {tiny_sample.resolve()}, not {other.resolve()}"):
        array_cache.write_array_cache(other, tiny_cache, (40, 32), "squish", workers=1, progress=False)


def test_failed_write_leaves_no_half_cache(tiny_sample, tmp_path):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    bad = next((data / "train_images").glob("*/*.jpg"))
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG: decoding fails mid-way through the cache
    out = tmp_path / "out" / "cache"
    with pytest.raises(DataError, match=f"1 images could not be read, so no cache was written: .*{bad.name}"):
        array_cache.write_array_cache(data, out, (40, 32), "squish", workers=2, progress=False)
    assert not (tmp_path / "out").exists()  # no cache, no temporary folder, and the folder made for its lock gone


def test_remade_cache_replaces_the_old_one(tiny_sample, tiny_cache, tmp_path):
    copy = shutil.copytree(tiny_cache, tmp_path / "c")
    summary = array_cache.write_array_cache(tiny_sample, copy, (24, 24), "crop", workers=1, progress=False)
    assert (summary.item_size, summary.stored_size, summary.up_to_date) == ((24, 24), (32, 24), False)
    assert np.load(copy / "train.npy").shape == (120, 32, 24, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


@pytest.mark.parametrize("case", ["inside", "not-a-cache", "method", "size"])
def test_bad_requests_write_nothing(tiny_sample, tmp_path, case):
    out = {"inside": tiny_sample / "cache", "not-a-cache": tmp_path / "full"}.get(case, tmp_path / "c")
    if case == "not-a-cache":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    method, size = ("blur" if case == "method" else "squish"), ("0,4" if case == "size" else (8, 8))
    with pytest.raises((DataError, ConfigError)):
        array_cache.write_array_cache(tiny_sample, out, size, method, workers=1, progress=False)
    assert not (out / array_cache.MANIFEST).exists() and not (tiny_sample / "cache").exists()
