"""The data layer: find a competition folder, read its CSVs, list its images, and build fastai DataLoaders."""

import hashlib
from pathlib import Path

from paddy import competition, runtime
from paddy.errors import DataError

KAGGLE_DATA = Path(runtime.KAGGLE_INPUT) / competition.COMPETITION
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_data(path=None):
    """The competition folder: `path` when given, else the Kaggle input folder inside a kernel."""
    if path is None:
        if not runtime.is_kaggle():
            raise DataError("no data folder given: pass DATA (a competition folder, e.g. one made by paddy sample)")
        path = KAGGLE_DATA
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder: pass a competition folder (train.csv, train_images/, test_images/)")
    return path


def read_csv(path, missing="", **kwargs):
    """pandas.read_csv with one-line DataErrors: a missing file says `missing` (what to do), a broken one says why."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing" + (f": {missing}" if missing else ""))
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} is not a readable CSV ({reason}); fix or replace it") from None


def read_train_csv(data, targets=("label",)):
    """train.csv as a DataFrame (image_id as text); variety must be complete only when it is a target."""
    path = Path(data) / competition.TRAIN_CSV
    frame = read_csv(path, f"is {data} a competition folder? (paddy check {data})",
                     dtype={"image_id": str, "label": str, "variety": str})
    needed = ["image_id", *targets]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; expected {','.join(competition.TRAIN_COLUMNS)}")
    require_targets(frame, targets, where=str(path))
    return frame


def require_targets(frame, targets, where="train.csv"):
    """Raise DataError when a target column is missing or has empty values."""
    for target in targets:
        if target not in frame.columns:
            raise DataError(f"{where} has no {target!r} column, needed for the {target} target")
        empty = frame[target].isna() | (frame[target].astype(str).str.strip() == "")
        if empty.any():
            first = frame.loc[empty, "image_id"].iloc[0]
            raise DataError(f"{where}: {int(empty.sum())} image(s) have no {target} (first {first}); "
                            f"fix the CSV or drop {target} from --targets")


def train_items(data):
    """One row per training image on disk: image_id, label (its folder), variety, age, path; sorted by id."""
    import pandas as pd

    folder = Path(data) / competition.TRAIN_IMAGES
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: is {data} a competition folder? (paddy check {data})")
    files = [p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES]
    items = pd.DataFrame({"image_id": [p.name for p in files], "label": [p.parent.name for p in files],
                          "path": [str(p) for p in files]})
    if items.empty:
        raise DataError(f"{folder} holds no images; run paddy check {data}")
    frame = read_train_csv(data, targets=())
    extra = [c for c in ("variety", "age") if c in frame.columns]
    items = items.merge(frame[["image_id", *extra]], on="image_id", how="left")
    for column in ("variety", "age"):
        if column not in items.columns:
            items[column] = None
    items = items.sort_values("image_id", kind="stable").reset_index(drop=True)
    return items[["image_id", "label", "variety", "age", "path"]]


def valid_mask(image_ids, valid_pct, seed):
    """Boolean list: True for validation images; depends only on the set of ids and the seed, not on order."""
    ids = [str(i) for i in image_ids]
    n_valid = int(round(len(ids) * valid_pct))
    # Rank ids by a seeded hash: the chosen set is the same whatever order the rows come in.
    ranked = sorted(set(ids), key=lambda i: hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest())
    chosen = set(ranked[:n_valid])
    return [i in chosen for i in ids]


def smallest_class_items(items):
    """The rows of the least frequent label (ties: the first name), what the memory probe trains on."""
    counts = items["label"].value_counts()
    smallest = sorted(counts.index[counts == counts.min()])[0]
    return items[items["label"] == smallest].reset_index(drop=True)


def test_items(data):
    """One row per test image, sorted by id: image_id, path."""
    import pandas as pd

    folder = Path(data) / competition.TEST_IMAGES
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: is {data} a competition folder? (paddy check {data})")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
    return pd.DataFrame({"image_id": [p.name for p in files], "path": [str(p) for p in files]})


def target_vocabs(items, targets):
    """{target: sorted classes} over all items, so train and valid (and every member) share one vocab."""
    return {t: tuple(sorted(items[t].astype(str).unique())) for t in targets}


def image_datablock(items, config):
    """The fastai DataBlock for `config.targets`: image in, one category per target out."""
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        ImageBlock,
        Resize,
        ResizeMethod,
        aug_transforms,
    )

    vocabs = target_vocabs(items, config.targets)
    readers = [ColReader(t) for t in config.targets]
    method = {"squish": ResizeMethod.Squish, "crop": ResizeMethod.Crop, "pad": ResizeMethod.Pad}[config.item_method]
    return DataBlock(
        blocks=(ImageBlock, *[CategoryBlock(vocab=list(vocabs[t])) for t in config.targets]),
        n_inp=1, get_x=ColReader("path"), get_y=readers[0] if len(readers) == 1 else readers,
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(config.item_size, method=method),
        batch_tfms=aug_transforms(size=config.size, min_scale=config.min_scale))


def image_dataloaders(items, config, device=None):
    """Seeded fastai DataLoaders over `items` for `config.targets`, batch size `config.micro_bs`."""
    import torch

    require_targets(items, config.targets, where="training items")
    items = items.copy()  # never mutate the caller's frame
    items["is_valid"] = valid_mask(items["image_id"], config.valid_pct, config.valid_seed)
    if items["is_valid"].all() or not items["is_valid"].any():
        raise DataError(f"{len(items)} images are too few to split with valid_pct={config.valid_pct}")
    device = runtime.resolve_device(config.device if device is None else device)
    runtime.seed_everything(config.seed)
    kwargs = {} if config.num_workers is None else {"num_workers": config.num_workers}
    return image_datablock(items, config).dataloaders(items, bs=config.micro_bs, device=torch.device(device),
                                                       **kwargs)


def dataloader_vocabs(dls, targets):
    """{target: classes} in the order the model's outputs use."""
    vocab = dls.vocab
    vocabs = [vocab] if len(targets) == 1 else list(vocab)
    return {t: tuple(str(c) for c in v) for t, v in zip(targets, vocabs, strict=True)}
