"""fastai DataLoaders over a competition folder's items: item resize per image, augmentation per batch."""

import pandas as pd
import torch
from fastai.vision.all import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataLoaders,
    ImageBlock,
    Resize,
    ResizeMethod,
    aug_transforms,
)

from paddy.core import runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.data.folder import require_targets, split_mask, target_vocabs


def image_datablock(items: pd.DataFrame, config: TrainConfig) -> DataBlock:
    """The fastai DataBlock for `config.targets`: image in, one category per target out."""
    vocabs = target_vocabs(items, config.targets)
    readers = [ColReader(t) for t in config.targets]
    method = {"squish": ResizeMethod.Squish, "crop": ResizeMethod.Crop, "pad": ResizeMethod.Pad}[config.item_method]
    return DataBlock(
        blocks=(ImageBlock, *[CategoryBlock(vocab=list(vocabs[t])) for t in config.targets]),
        n_inp=1, get_x=ColReader("path"), get_y=readers[0] if len(readers) == 1 else readers,
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(config.item_size, method=method),
        batch_tfms=aug_transforms(size=config.size, min_scale=config.min_scale))


def image_dataloaders(items: pd.DataFrame, config: TrainConfig, device: str | None = None,
                      valid_ids: frozenset | None = None) -> DataLoaders:
    """Seeded fastai DataLoaders over `items` for `config.targets`, batch size `config.micro_bs`.

    The validation set is `valid_ids` when given (a cross-validation fold), else a seeded `valid_pct` split.
    """
    require_targets(items, config.targets, where="training items")
    items = items.copy()  # never mutate the caller's frame
    if valid_ids is None:
        items["is_valid"] = split_mask(list(items["image_id"]), config.valid_pct, config.valid_seed, config.split)
    else:
        items["is_valid"] = items["image_id"].astype(str).isin(valid_ids)
    if items["is_valid"].all() or not items["is_valid"].any():
        raise DataError(f"{len(items)} images are too few to split with valid_pct={config.valid_pct}")
    device = runtime.resolve_device(config.device if device is None else device)
    runtime.seed_everything(config.seed)
    kwargs = {} if config.num_workers is None else {"num_workers": config.num_workers}
    return image_datablock(items, config).dataloaders(items, bs=config.micro_bs, device=torch.device(device),
                                                       **kwargs)


def dataloader_vocabs(dls: DataLoaders, targets: tuple) -> dict:
    """{target: classes} in the order the model's outputs use."""
    vocab = dls.vocab
    vocabs = [vocab] if len(targets) == 1 else list(vocab)
    return {t: tuple(str(c) for c in v) for t, v in zip(targets, vocabs, strict=True)}
