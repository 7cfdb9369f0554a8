"""What a run reads: a competition folder of JPEGs (or a JPEG cache of one) or an array cache, behind one interface.

Train, probe and the kernels call these instead of choosing themselves: the items, the test items, the check
before a run, the DataLoaders, the item size a run defaults to, and the record of the source in config.json.
"""

from pathlib import Path

import pandas as pd
from fastai.data.core import DataLoaders

from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.data import array_cache, competition, folder
from paddy.data.array_loader import array_dataloaders
from paddy.data.loaders import image_dataloaders
from paddy.data.verdict import require_valid_once

MAX_DEFAULT_SIDE = 480  # the notebooks' item size: the default never goes above it, nor above the data
SIZE_SAMPLE = 20  # training images whose header sets a folder's default item size


def is_array_cache(data: str | Path) -> bool:
    """True when `data` is an array cache (`paddy resize --format array`) rather than a folder of images."""
    return array_cache.is_array_cache(data)


def train_items(data: str | Path) -> pd.DataFrame:
    """One row per training image: image_id, label, variety, age, and path (a folder) or row (an array cache)."""
    return array_cache.cache_items(data, "train") if is_array_cache(data) else folder.train_items(data)


def test_items(data: str | Path) -> pd.DataFrame:
    """One row per test image, sorted by id: image_id, and path (a folder) or row (an array cache)."""
    return array_cache.cache_items(data, "test") if is_array_cache(data) else folder.test_items(data)


def count_images(data: str | Path) -> int:
    """How many training and test images `data` holds (for messages: a folder's files are counted, not decoded)."""
    if is_array_cache(data):
        return len(train_items(data)) + len(test_items(data))
    return folder.count_images(data)


def require_ready(data: str | Path, config: TrainConfig | None = None, progress: bool = False) -> None:
    """Raise one DataError line unless `data` can serve runs of `config`: a folder passes `paddy check` (every
    image decodes; remembered until a file changes), an array cache is whole, unchanged and of the config's item size
    and method."""
    if not is_array_cache(data):
        require_valid_once(data, progress=progress)  # not decoded again while the folder is unchanged
        return
    item = {} if config is None else {"item_size": config.item_size, "item_method": config.item_method}
    array_cache.require_cache(data, **item)


def dataloaders(data: str | Path, items: pd.DataFrame, config: TrainConfig, device: str | None = None,
                valid_ids: frozenset | None = None) -> DataLoaders:
    """The fastai DataLoaders of a run over `items` (from `train_items(data)`): decoding JPEGs or indexing arrays;
    the validation set is the fold `valid_ids` when given, else the seeded valid_pct split."""
    if is_array_cache(data):
        return array_dataloaders(data, items, config, device=device, valid_ids=valid_ids)
    return image_dataloaders(items, config, device=device, valid_ids=valid_ids)


def data_item_size(data: str | Path) -> tuple:
    """The item size a run defaults to: an array cache's own; else the images' (most common among the first
    SIZE_SAMPLE training images), capped at MAX_DEFAULT_SIDE per side, so a small cache is never scaled up."""
    if is_array_cache(data):
        return tuple(array_cache.read_manifest(data)["item_size"])
    paths = sorted((Path(data) / competition.TRAIN_IMAGES).glob("*/*"))[:SIZE_SAMPLE]
    if not paths:
        raise DataError(f"no training image in {data} to take the item size from: run paddy check {data}, "
                        "or give --item-size")
    width, height = array_cache.reference_size(paths)  # unreadable ones skipped: `paddy check` names them
    return min(height, MAX_DEFAULT_SIDE), min(width, MAX_DEFAULT_SIDE)


def resolve_item_size(data: str | Path, config: TrainConfig) -> TrainConfig:
    """`config` with its item size taken from the data when it has none (see `data_item_size`)."""
    return config if config.item_size is not None else config.replace(item_size=data_item_size(data))


def describe_source(data: str | Path) -> dict:
    """What config.json records about the data a run read: its kind and path, and for a cache what it was made
    from (source folder, its digest, item size and method)."""
    if not is_array_cache(data):
        return {"kind": "images", "path": str(Path(data).resolve())}
    info = array_cache.read_manifest(data)
    return {"kind": "array-cache", "path": str(Path(data).resolve()), "source": info["source"],
            "source_digest": info["source_digest"], "item_size": info["item_size"],
            "item_method": info["item_method"], "stored_size": info["stored_size"]}
