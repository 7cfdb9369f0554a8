"""fastai DataLoaders over an array cache: a batch is one fancy-index slice of a memory-mapped uint8 array.

No PIL and no per-item Python work: the batch's rows are read in one indexing call, handed to the device as
uint8, and everything else runs there as batch transforms, the same ones the JPEG path uses (`IntToFloatTensor`,
fastai's `aug_transforms`, and the `Normalize` that `vision_learner` adds for pretrained models). The split
(`split_mask`), the vocabs (`target_vocabs`) and the batch size are the JPEG path's, so `build_learner`, `fit`,
`predict`, TTA and `test_dl` work unchanged.

What differs from the JPEG path:
- The item transform ran once, when the cache was written (`paddy.data.array_cache`). For squish, and for crop and
  pad when the image already has the item's aspect ratio, that is exactly fastai's `Resize`: it has no randomness.
- For crop and pad on other aspect ratios, fastai's `Resize` draws the window's position per item in training.
  Here `WindowCrop` draws it per item on the batch side, inside the stored margin, from the same range for the
  most common image shape (other shapes get the margin at their own scale, reflection-padded where it passes an
  edge); validation, test and TTA's plain pass take the centred window, as fastai does. Pixels match fastai's to
  within 1/255 away from the window's edge (the cache resizes the wider region, so edge pixels see their
  neighbours).
- Item transforms (`after_item`, `before_batch`) never run: there are no items, only batches.
- No DataLoader workers by default (fastai's default is one per CPU): a batch is one copy out of the page cache,
  faster in-process than any worker could hand it over.
- A model exported from an array-cache run (`model.pkl`) carries these DataLoaders, empty: loading it needs paddy.
"""

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders, TfmdDL
from fastai.data.transforms import CategoryMap, IntToFloatTensor
from fastai.torch_core import TensorCategory, TensorImage, to_device
from fastai.vision.augment import RandTransform, aug_transforms
from fastcore.foundation import L
from fasttransform.cast import explode_types

from paddy.core import runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import DataError
from paddy.data.array_cache import cache_items, open_array, require_cache
from paddy.data.folder import require_targets, split_mask, target_vocabs


class ArrayItems:
    """Rows of one split's array with their targets: what an `ArrayDL` indexes, a batch at a time."""

    n_inp = 1

    def __init__(self, cache, split, items, targets, vocabs, split_idx=None):
        self.cache, self.split, self.items = Path(cache), split, items.reset_index(drop=True)
        self.targets, self.vocabs, self.split_idx = tuple(targets), dict(vocabs), split_idx
        self.rows = self.items["row"].to_numpy(np.int64)
        # Class codes once, here: a batch then only indexes integer arrays.
        self.codes = [self.items[t].astype(str).map({c: i for i, c in enumerate(vocabs[t])}).to_numpy(np.int64)
                      for t in self.targets]
        self._array = None

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        return {**self.__dict__, "_array": None}  # workers and pickles reopen the file, never copy its pixels

    @property
    def array(self):
        """The split's uint8 array, memory-mapped on first use (its size checked against the manifest)."""
        if self._array is None:
            self._array = open_array(self.cache, self.split)
        return self._array

    @property
    def vocab(self):
        """fastai's vocab: one CategoryMap, or one per target (as a multi-target DataBlock's)."""
        maps = [CategoryMap(list(self.vocabs[t]), sort=False) for t in self.targets]
        return maps[0] if len(maps) == 1 else L(maps)

    def batch(self, idxs):
        """(images, *targets) of positions `idxs`: one fancy-index read, uint8 NCHW (a view of NHWC rows)."""
        idxs = np.asarray(idxs, dtype=np.int64)
        images = TensorImage(torch.from_numpy(self.array[self.rows[idxs]]).permute(0, 3, 1, 2))
        return (images, *(TensorCategory(torch.from_numpy(codes[idxs])) for codes in self.codes))

    def __getitem__(self, i):
        return tuple(t[0] for t in self.batch([i]))

    def subset(self, items, targets=None, split=None):
        """The same cache and vocabs over other rows (and targets: none for test items)."""
        return ArrayItems(self.cache, split or self.split, items, self.targets if targets is None else targets,
                          self.vocabs, self.split_idx)

    def new_empty(self):
        """No rows (what `learn.export` pickles)."""
        return self.subset(self.items.iloc[:0])

    @contextlib.contextmanager
    def set_split_idx(self, i):
        """fastai's TTA switches the validation set to training augmentation with this."""
        before, self.split_idx = self.split_idx, i
        try:
            yield self
        finally:
            self.split_idx = before


class WindowCrop(RandTransform):
    """The item-size window of each stored image: drawn per item in training, centred otherwise (what fastai's
    `Resize` does per item for crop and pad), on the batch's device; makes the batch contiguous either way."""

    split_idx, order = None, 5  # every split; before IntToFloatTensor (10): it moves a quarter of the bytes

    def __init__(self, item_size):
        super().__init__()
        self.item_size = tuple(item_size)

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        self.training = split_idx == 0

    def encodes(self, x: TensorImage):
        (height, width), (full_h, full_w) = self.item_size, x.shape[-2:]
        if (full_h, full_w) == (height, width):
            return x.contiguous()
        n = x.shape[0]
        if self.training:
            top = torch.randint(0, full_h - height + 1, (n,), device=x.device)
            left = torch.randint(0, full_w - width + 1, (n,), device=x.device)
        else:
            top = torch.full((n,), (full_h - height) // 2, device=x.device)
            left = torch.full((n,), (full_w - width) // 2, device=x.device)
        rows = top[:, None] + torch.arange(height, device=x.device)
        cols = left[:, None] + torch.arange(width, device=x.device)
        nhwc = x.permute(0, 2, 3, 1)  # one gather over (item, row, column), channels carried along
        window = nhwc[torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return TensorImage(window.permute(0, 3, 1, 2).contiguous())


class ArrayDL(TfmdDL):
    """A fastai TfmdDL whose batches come whole from `ArrayItems.batch`; batch transforms run as usual."""

    def create_batches(self, samps):
        batch = []
        for index in samps:
            batch.append(index)
            if len(batch) == self.bs:
                yield self.dataset.batch(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.dataset.batch(batch)

    def _one_pass(self):
        # fastai collates one item through after_item to learn the batch's types; a batch of one says the same.
        if not len(self.dataset):
            self._n_inp, self._types = 1, {tuple: [TensorImage] + [TensorCategory] * len(self.dataset.targets)}
            return
        b = to_device(self.dataset.batch([0]), self.device) if self.device is not None else self.dataset.batch([0])
        self._n_inp, self._types = 1, explode_types(self.after_batch(b))


class ArrayDataLoaders(DataLoaders):
    """fastai DataLoaders over an array cache; `test_dl` reads the cache's test array by image id."""

    def test_dl(self, test_items, rm_type_tfms=None, with_labels=False, **kwargs):
        """A DataLoader over `test_items` (a frame with image_id, or image ids): validation transforms, no labels."""
        ids = list(test_items["image_id"] if hasattr(test_items, "columns") else test_items)
        dataset = self.valid.dataset
        known = {}
        for split in ("test", "train"):
            known[split] = cache_items(dataset.cache, split).set_index("image_id")["row"]
            if all(i in known[split].index for i in ids):
                items = known[split].loc[ids].reset_index()
                return self.valid.new(dataset.subset(items, targets=(), split=split), **kwargs)
        missing = [i for i in ids if not any(i in rows.index for rows in known.values())]
        where = f"{missing[0]} is not" if missing else "the images are not all"
        raise DataError(f"{where} in one split of the array cache {dataset.cache}: pass its test or its train ids")


def batch_transforms(config: TrainConfig) -> list:
    """The batch side, in fastai's order: the item window, uint8 to float, then the JPEG path's aug_transforms."""
    return [WindowCrop(config.item_size), IntToFloatTensor(),
            *aug_transforms(size=config.size, min_scale=config.min_scale)]


def array_dataloaders(cache: str | Path, items: pd.DataFrame, config: TrainConfig,
                      device: str | None = None, valid_ids: frozenset | None = None) -> ArrayDataLoaders:
    """Seeded fastai DataLoaders over the array cache `cache` for `config.targets`: the JPEG path's split (or the
    fold `valid_ids`), vocabs, batch size and batch transforms; `items` are the cache's training rows
    (`cache_items(cache, "train")`)."""
    require_cache(cache, item_size=config.item_size, item_method=config.item_method, check_source=False)
    require_targets(items, config.targets, where="training items")
    if valid_ids is None:
        is_valid = np.asarray(split_mask(list(items["image_id"]), config.valid_pct, config.valid_seed,
                                         config.split))
    else:
        is_valid = items["image_id"].astype(str).isin(valid_ids).to_numpy()
    if is_valid.all() or not is_valid.any():
        raise DataError(f"{len(items)} images are too few to split with valid_pct={config.valid_pct}")
    device = torch.device(runtime.resolve_device(config.device if device is None else device))
    runtime.seed_everything(config.seed)
    vocabs = target_vocabs(items, config.targets)
    train = ArrayItems(cache, "train", items[~is_valid], config.targets, vocabs, split_idx=0)
    valid = ArrayItems(cache, "train", items[is_valid], config.targets, vocabs, split_idx=1)
    # Reading a batch is one memcpy from the page cache (tens of thousands of images/s in-process, bench/
    # array_cache.py): worker processes would only add inter-process copies, so none unless asked for.
    workers = 0 if config.num_workers is None else config.num_workers
    train_dl = ArrayDL(train, bs=config.micro_bs, shuffle=True, drop_last=True, device=device,
                       after_batch=batch_transforms(config), num_workers=workers)
    # As fastai's Datasets.dataloaders: the validation loader shares the training loader's batch pipeline.
    valid_dl = train_dl.new(valid, shuffle=False, drop_last=False)
    return ArrayDataLoaders(train_dl, valid_dl, device=device)
