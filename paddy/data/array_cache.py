"""A decode-free image cache: every image decoded once, through the item transform, into one uint8 array per split.

`paddy resize DATA OUT --format array --item-size H,W` writes OUT/:
  train.npy, test.npy   uint8 (N, H', W', 3): each image through fastai's `Resize` geometry (squish, crop, pad)
  index.csv             split, row, image_id, label, variety, age: which image each row holds
  manifest.json         source folder, item size and method, stored size, a digest over every source file's size
                        and mtime, the format version, each array's shape and byte count
  train.csv, sample_submission.csv   copies, so the folder answers what a competition folder's CSVs answer

Squish stores exactly what `Resize(item_size, squish)` gives. Crop and pad are random in fastai's training pipeline
(the window's position is drawn per item); to keep that, the array stores the whole range the window can move over
(the stored size is larger than the item size along the free axis, for the most common image shape) and the loader
picks the window per item on the batch side (center on validation and test, as fastai does).

The whole folder is built in a temporary folder beside OUT and renamed into place, so an interrupted write leaves
no half cache. Readers memory-map the arrays after checking their byte counts against the manifest.
"""

import collections
import hashlib
import json
import math
import operator
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.vision.core import PILImage
from PIL import Image

from paddy.core import atomic, lock, runtime
from paddy.core.config import parse_size
from paddy.core.errors import ConfigError, DataError
from paddy.core.tables import read_csv
from paddy.data import competition
from paddy.data.folder import read_train_csv, test_items, train_items

FORMAT = "paddy-array-cache"
VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.csv"
SPLITS = ("train", "test")
METHODS = ("squish", "crop", "pad")
INDEX_COLUMNS = ("split", "row", "image_id", "label", "variety", "age")


def is_array_cache(path):
    """True when `path` holds an array cache's manifest (what `paddy resize --format array` writes)."""
    return (Path(path) / MANIFEST).is_file()


def source_files(data):
    """Every file a cache depends on, relative to `data`, sorted: the CSVs, train and test images."""
    data = Path(data)
    files = [data / name for name in (competition.TRAIN_CSV, competition.SAMPLE_SUBMISSION_CSV)]
    files += sorted((data / competition.TRAIN_IMAGES).glob("*/*")) + sorted((data / competition.TEST_IMAGES).glob("*"))
    return [p.relative_to(data).as_posix() for p in files if p.is_file()]


def source_digest(data):
    """sha256 over each source file's path, size and mtime: changes when any image or CSV is added, removed or
    rewritten (cheap: stats only, no reads)."""
    digest = hashlib.sha256()
    for rel in source_files(data):
        stat = (Path(data) / rel).stat()
        digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def crop_window(image_wh, item_hw, method):
    """fastai `Resize`'s source window (width, height) for `method`: the image (squish), the largest (crop) or
    smallest (pad) window of the item's aspect ratio; the same int arithmetic as fastai's."""
    width, height = image_wh
    item_h, item_w = item_hw
    if method == "squish":
        return width, height
    op = operator.gt if method == "pad" else operator.lt
    scale = width / item_w if op(width / item_w, height / item_h) else height / item_h
    return int(scale * item_w), int(scale * item_h)


def stored_size(reference_wh, item_hw, method):
    """(height, width) of the stored arrays: the item size plus the range fastai's random window moves over on an
    image of `reference_wh` (the most common shape), so the batch side can still draw the window's position. The
    margin is even, so the centred window (validation, test) starts on a whole pixel."""
    if method == "squish":
        return tuple(item_hw)
    window = crop_window(reference_wh, item_hw, method)
    span = [w + abs(s - w) for w, s in zip(window, reference_wh, strict=True)]  # (width, height) the window covers
    wide = (item_hw[0] * span[1] / window[1], item_hw[1] * span[0] / window[0])
    return tuple(item + 2 * int((full - item) / 2 + 1e-6) for item, full in zip(item_hw, wide, strict=True))


def source_box(image_wh, item_hw, method, stored_hw):
    """(left, top, right, bottom) of the source region that becomes a stored array, in (fractional) source pixels:
    fastai's centred window, widened at its scale by the stored margin; it may reach past the image's edges."""
    width, height = image_wh
    window = crop_window(image_wh, item_hw, method)
    if method == "squish":
        return 0.0, 0.0, float(width), float(height)
    scale_x, scale_y = window[0] / item_hw[1], window[1] / item_hw[0]
    left = int(0.5 * (width - window[0])) - (stored_hw[1] - item_hw[1]) / 2 * scale_x  # fastai's validation spot
    top = int(0.5 * (height - window[1])) - (stored_hw[0] - item_hw[0]) / 2 * scale_y
    return left, top, left + stored_hw[1] * scale_x, top + stored_hw[0] * scale_y


def transform_image(path, item_hw, method, stored_hw):
    """The uint8 (H', W', 3) array stored for the image at `path`: decoded as fastai decodes it, reflection-padded
    where the region passes an edge (fastai's pad mode), resized bilinearly from the region (Pillow, as fastai)."""
    image = PILImage.create(path)
    left, top, right, bottom = source_box(image.size, item_hw, method, stored_hw)
    pads = [max(0, math.ceil(-left)), max(0, math.ceil(-top)), max(0, math.ceil(right - image.size[0])),
            max(0, math.ceil(bottom - image.size[1]))]
    if any(pads):
        image = PILImage.create(np.pad(np.asarray(image), ((pads[1], pads[3]), (pads[0], pads[2]), (0, 0)),
                                       mode="reflect"))
    box = (left + pads[0], top + pads[1], right + pads[0], bottom + pads[1])
    out = image.resize((stored_hw[1], stored_hw[0]), Image.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


def reference_size(paths):
    """The most common (width, height) among the images at `paths` (headers only; an unreadable one is skipped
    here and reported by the writer); ties: the first seen."""
    counts = collections.Counter()
    for path in paths:
        try:
            with Image.open(path) as image:
                counts[image.size] += 1
        except (OSError, SyntaxError, ValueError):
            continue
    if not counts:
        raise DataError(f"none of the {len(paths)} training images could be read: run paddy check on the data")
    return counts.most_common(1)[0][0]


_OPEN = {}  # per worker process: the array file it writes into, opened once


def _write_rows(job):
    """Worker: transform images into rows `start`... of the .npy at `array_path`; return the failure lines."""
    array_path, start, paths, item_hw, method, stored_hw = job
    if array_path not in _OPEN:
        _OPEN.clear()
        _OPEN[array_path] = np.load(array_path, mmap_mode="r+")
    array, failures = _OPEN[array_path], []
    for row, path in enumerate(paths, start):
        try:
            array[row] = transform_image(path, item_hw, method, stored_hw)
        except (OSError, SyntaxError, ValueError) as error:
            failures.append(f"{path}: {error}")
    array.flush()
    return failures


def _report(progress, split, done, total, started):
    """Print one progress line (no bar characters: logs stay readable)."""
    if progress:
        seconds = time.perf_counter() - started
        rate = done / seconds if seconds > 0 else 0.0
        print(f"{split}: {done}/{total} images ({rate:.0f}/s)", flush=True)


def write_split(array_path, paths, item_hw, method, stored_hw, workers=1, progress=True, split=""):
    """Write every image of `paths` into a new uint8 .npy at `array_path`; return the failure lines."""
    array = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8, shape=(len(paths), *stored_hw, 3))
    del array  # the header and size are on disk; workers open it themselves
    chunk = 32  # large enough to amortise a task's overhead, small enough to balance and report often
    jobs = [(str(array_path), i, [str(p) for p in paths[i:i + chunk]], tuple(item_hw), method, tuple(stored_hw))
            for i in range(0, len(paths), chunk)]
    started, last, done, failures = time.perf_counter(), time.perf_counter(), 0, []
    pool = (ProcessPoolExecutor(max_workers=workers, initializer=runtime.die_with_parent, initargs=(os.getpid(),))
            if workers > 1 else _InProcess())
    with pool:
        for job, failed in zip(jobs, pool.map(_write_rows, jobs), strict=True):
            done, failures = done + len(job[2]), failures + failed
            if time.perf_counter() - last > 5:
                _report(progress, split, done, len(paths), started)
                last = time.perf_counter()
    _OPEN.clear()
    _report(progress, split, done, len(paths), started)
    return failures


class _InProcess:
    """A stand-in for the pool when one process is asked for (tests, one-core machines)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, jobs):
        return map(function, jobs)


@dataclass(frozen=True)
class ArraySummary:
    """What `write_array_cache` did."""

    out: Path
    item_size: tuple
    item_method: str
    stored_size: tuple
    n_train: int
    n_test: int
    bytes: int
    seconds: float
    up_to_date: bool = False

    def describe(self):
        """One line for the command line."""
        what = (f"{self.n_train} train and {self.n_test} test images, item {self.item_size[0]}x{self.item_size[1]} "
                f"{self.item_method} (stored {self.stored_size[0]}x{self.stored_size[1]}), "
                f"{self.bytes / 1e6:.1f} MB")
        if self.up_to_date:
            return f"{self.out} is up to date: {what}"
        return f"wrote the array cache {self.out}: {what}, in {self.seconds:.1f} s"


def check_item(item_size, item_method):
    """(height, width) and method, checked; ConfigError otherwise."""
    if item_method not in METHODS:
        raise ConfigError(f"item method must be one of {', '.join(METHODS)}, got {item_method!r}")
    return parse_size(item_size, "item size"), item_method


def check_output(data, out):
    """Raise before anything is written: OUT inside DATA, OUT a file, OUT a non-empty folder that is not an array
    cache, or an array cache made from another folder."""
    if out == data or data in out.parents:
        raise DataError(f"{out} is inside {data}: write the array cache to a folder outside the data")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder: choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not is_array_cache(out):
        raise DataError(f"{out} is not empty and not an array cache: choose another output folder")
    if is_array_cache(out):
        source = read_manifest(out).get("source")
        if source != str(data):
            raise DataError(f"{out} is an array cache of {source}, not {data}: choose another output folder or "
                            "remove it")


def index_frame(train, test):
    """index.csv: one row per stored image, train rows then test rows."""
    parts = [train.assign(split="train", row=range(len(train))),
             test.assign(split="test", row=range(len(test)), label="", variety="", age="")]
    return pd.concat(parts, ignore_index=True)[list(INDEX_COLUMNS)]


def manifest(data, item_hw, method, stored_hw, arrays, digest):
    """manifest.json's content; `arrays` maps split -> the written .npy path."""
    entries = {}
    for split, path in arrays.items():
        array = np.load(path, mmap_mode="r")
        entries[split] = {"file": f"{split}.npy", "shape": list(array.shape), "dtype": "uint8",
                          "bytes": path.stat().st_size}
    return {"format": FORMAT, "version": VERSION, "source": str(data), "item_size": list(item_hw),
            "item_method": method, "stored_size": list(stored_hw), "source_digest": digest,
            "arrays": entries}


def check_source(data):
    """DataError unless `data` is a competition folder with readable CSVs."""
    if not data.is_dir():
        raise DataError(f"{data} does not exist or is not a folder: pass a competition folder to cache")
    names = (competition.TRAIN_CSV, competition.SAMPLE_SUBMISSION_CSV, competition.TRAIN_IMAGES,
             competition.TEST_IMAGES)
    missing = [name for name in names if not (data / name).exists()]
    if missing:
        raise DataError(f"{data} is not a competition folder: it lacks {', '.join(missing)}")
    read_train_csv(data, targets=())
    read_csv(data / competition.SAMPLE_SUBMISSION_CSV, f"run paddy check {data}", dtype=str)


def _build(tmp, data, train, test, item_hw, method, stored_hw, workers, progress):
    """Write arrays, index, CSV copies and (last) the manifest into the folder `tmp`."""
    digest = source_digest(data)
    arrays, failures = {}, []
    for split, frame in zip(SPLITS, (train, test), strict=True):
        arrays[split] = tmp / f"{split}.npy"
        failures += write_split(arrays[split], list(frame["path"]), item_hw, method, stored_hw, workers=workers,
                                progress=progress, split=split)
    if failures:
        shown = "; ".join(failures[:3]) + (f" (and {len(failures) - 3} more)" if len(failures) > 3 else "")
        raise DataError(f"{len(failures)} images could not be read, so no cache was written: {shown}; "
                        f"run paddy check {data}")
    if source_digest(data) != digest:
        raise DataError(f"{data} changed while the cache was written: run the same command again")
    atomic.write_csv(tmp / INDEX, index_frame(train.drop(columns="path"), test.drop(columns="path")))
    for name in (competition.TRAIN_CSV, competition.SAMPLE_SUBMISSION_CSV):
        shutil.copyfile(data / name, tmp / name)
    atomic.write_json(tmp / MANIFEST, manifest(data, item_hw, method, stored_hw, arrays, digest))


def write_array_cache(data, out, item_size, item_method="squish", workers=None, progress=True):
    """Decode every train and test image of `data` once, through the item transform, into the array cache `out`
    (built beside it, then renamed into place); an up-to-date cache is left as it is. Return a summary."""
    started = time.perf_counter()
    data, out = Path(data).resolve(), Path(out).resolve()
    item_hw, method = check_item(item_size, item_method)
    check_source(data)
    with lock.hold(out, "array cache"):  # two builds would replace each other's folder
        atomic.remove_stale_temps(out)  # the half-built folder a killed build left beside OUT
        return _write_locked(data, out, item_hw, method, workers, progress, started)


def _write_locked(data, out, item_hw, method, workers, progress, started):
    check_output(data, out)
    if is_array_cache(out) and not cache_problems(out, item_size=item_hw, item_method=method, source=data):
        return _summary(out, time.perf_counter() - started, up_to_date=True)
    train, test = train_items(data), test_items(data)
    stored_hw = stored_size(reference_size(list(train["path"])), item_hw, method)
    workers = max(1, min(workers or os.cpu_count() or 1, -(-(len(train) + len(test)) // 32)))
    # Built beside OUT and renamed into place; check_output made sure an OUT with files is an older cache of DATA.
    with atomic.atomic_dir(out, replace=True) as tmp:
        _build(tmp, data, train, test, item_hw, method, stored_hw, workers, progress)
    return _summary(out, time.perf_counter() - started)


def _summary(out, seconds, up_to_date=False):
    info = read_manifest(out)
    arrays = info["arrays"]
    return ArraySummary(out, tuple(info["item_size"]), info["item_method"], tuple(info["stored_size"]),
                        arrays["train"]["shape"][0], arrays["test"]["shape"][0],
                        sum(a["bytes"] for a in arrays.values()), seconds, up_to_date)


def read_manifest(cache):
    """manifest.json as a dict; DataError when it is missing or unreadable."""
    path = Path(cache) / MANIFEST
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is missing or unreadable ({type(error).__name__}): remake the cache with "
                        "paddy resize DATA OUT --format array") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"{path} is not a paddy array cache manifest: remake it with paddy resize --format array")
    if info.get("version") != VERSION:
        raise DataError(f"{path} has format version {info.get('version')}, this paddy reads {VERSION}: remake the "
                        "cache with this paddy's paddy resize --format array")
    return info


def _remake(info):
    """The command that rewrites a cache like the one `info` describes."""
    height, width = info["item_size"]
    return (f"paddy resize {info['source']} OUT --format array --item-size {height},{width} "
            f"--item-method {info['item_method']}")


def array_problems(cache, info):
    """One line per array file that is missing, truncated or not the shape the manifest records."""
    problems = []
    for split in SPLITS:
        entry = info["arrays"][split]
        path = Path(cache) / entry["file"]
        size = path.stat().st_size if path.is_file() else None
        if size != entry["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            problems.append(f"{path} is {found}, the manifest says {entry['bytes']} bytes (truncated or replaced); "
                            f"remake it: {_remake(info)}")
            continue
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            problems.append(f"{path} is not a readable .npy ({error}); remake it: {_remake(info)}")
            continue
        if list(array.shape) != entry["shape"] or array.dtype != np.uint8:
            problems.append(f"{path} holds {array.dtype} {list(array.shape)}, the manifest says uint8 "
                            f"{entry['shape']}; remake it: {_remake(info)}")
    return problems


def request_problems(cache, info, item_size=None, item_method=None, source=None):
    """One line per thing a run asks for that this cache is not: item size, method, source folder."""
    problems = []
    if item_size is not None and tuple(item_size) != tuple(info["item_size"]):
        have, want = info["item_size"], item_size
        problems.append(f"{cache} holds items of {have[0]}x{have[1]}, the run asks for {want[0]}x{want[1]}: train "
                        f"with --item-size {have[0]},{have[1]} or make a cache at {want[0]},{want[1]}")
    if item_method is not None and item_method != info["item_method"]:
        problems.append(f"{cache} holds {info['item_method']} items, the run asks for {item_method}: train with "
                        f"--item-method {info['item_method']} or make a cache with --item-method {item_method}")
    if source is not None and str(Path(source).resolve()) != info["source"]:
        problems.append(f"{cache} is a cache of {info['source']}, not {Path(source).resolve()}: choose another "
                        "folder or remake it")
    return problems


def source_problems(cache, info):
    """A line when the cached source folder is here and its files changed since the cache was written; nothing
    when the source is elsewhere (a cache travels without its source, e.g. as a Kaggle dataset)."""
    source = Path(info["source"])
    if not source.is_dir() or source_digest(source) == info["source_digest"]:
        return []
    return [f"the files in {source} changed since {cache} was written (sizes or times differ): remake it: "
            f"{_remake(info)}"]


def cache_problems(cache, item_size=None, item_method=None, source=None, check_source=True):
    """Every reason the array cache `cache` cannot serve a run asking for `item_size`/`item_method`/`source`."""
    info = read_manifest(cache)
    problems = request_problems(cache, info, item_size, item_method, source)
    problems += array_problems(cache, info) + index_problems(cache, info)
    return problems + (source_problems(cache, info) if check_source else [])


def index_problems(cache, info):
    """A line when index.csv is missing, unreadable, or does not hold one row per array row of each split."""
    try:
        counts = {split: len(cache_items(cache, split)) for split in SPLITS}
    except DataError as error:
        return [f"{error}; remake the cache: {_remake(info)}"]
    return [f"{Path(cache) / INDEX} lists {counts[split]} {split} images, {split}.npy holds "
            f"{info['arrays'][split]['shape'][0]}: remake the cache: {_remake(info)}"
            for split in SPLITS if counts[split] != info["arrays"][split]["shape"][0]]


def check_cache(cache):
    """(problems, train images, test images) of the array cache `cache`: what `paddy check` reports for it."""
    try:
        info = read_manifest(cache)
    except DataError as error:
        return [str(error)], 0, 0
    shapes = [info["arrays"][split]["shape"][0] for split in SPLITS]
    return cache_problems(cache), *shapes


def require_cache(cache, item_size=None, item_method=None, source=None, check_source=True):
    """Raise one DataError line naming what differs when `cache` cannot serve the run; return its manifest."""
    problems = cache_problems(cache, item_size, item_method, source, check_source)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    return read_manifest(cache)


def open_array(cache, split, info=None):
    """The split's array, memory-mapped read-only, after its byte count is checked against the manifest."""
    info = read_manifest(cache) if info is None else info
    problems = [p for p in array_problems(cache, info) if f"{split}.npy" in p]
    if problems:
        raise DataError(problems[0])
    return np.load(Path(cache) / info["arrays"][split]["file"], mmap_mode="r")


def cache_items(cache, split):
    """index.csv's rows of `split`, in array order: image_id, label, variety, age, row (test: image_id, row)."""
    index = read_csv(Path(cache) / INDEX, f"remake the cache (paddy resize ... {cache} --format array)",
                     dtype={"image_id": str, "label": str, "variety": str}, keep_default_na=False)
    rows = index[index["split"] == split].sort_values("row").reset_index(drop=True)
    rows["age"] = rows["age"].replace("", None)
    columns = ["image_id", "label", "variety", "age", "row"] if split == "train" else ["image_id", "row"]
    return rows[columns]
