"""A synthetic competition folder with the real Paddy Doctor layout, labels, varieties and proportions.

Every disease paints its own lesions (colour, shape, count, place) and every variety its own leaf (tint and stripe
texture), so a small model can learn both targets from tiny images. Drawing happens on a small canvas with numpy
and is scaled up with Pillow, so a few hundred 480x640 JPEGs take a couple of seconds.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar
from PIL import Image, ImageChops

from paddy.core import atomic, lock
from paddy.core.config import check_range, positive_pair
from paddy.core.errors import DataError
from paddy.data import competition
from paddy.data.marker import write_competition

# disease -> lesion colour (RGB), number of lesions, half-height and half-width (fractions of the image), region
# (top, bottom) the lesion centres fall in. "normal" has no lesions.
DISEASE_LOOKS = {
    "normal": ((0, 0, 0), 0, 0.0, 0.0, (0.0, 1.0)),
    "blast": ((205, 200, 185), 5, 0.09, 0.03, (0.0, 1.0)),  # grey spindles
    "hispa": ((240, 240, 235), 25, 0.015, 0.015, (0.0, 1.0)),  # many small white scratches
    "dead_heart": ((150, 105, 40), 1, 0.25, 0.30, (0.55, 0.8)),  # one large dry patch low down
    "tungro": ((235, 190, 30), 2, 0.12, 0.60, (0.0, 0.3)),  # wide yellow-orange band at the top
    "brown_spot": ((95, 50, 15), 14, 0.03, 0.03, (0.0, 1.0)),  # round dark-brown spots
    "downy_mildew": ((215, 230, 215), 3, 0.16, 0.16, (0.2, 0.8)),  # soft whitish patches
    "bacterial_leaf_blight": ((230, 215, 120), 2, 0.60, 0.10, (0.3, 0.7)),  # pale stripes down the edges
    "bacterial_leaf_streak": ((175, 120, 50), 6, 0.35, 0.015, (0.2, 0.8)),  # thin vertical streaks
    "bacterial_panicle_blight": ((160, 40, 50), 4, 0.06, 0.09, (0.0, 0.25)),  # reddish blotches at the top
}
# variety -> leaf tint (RGB), stripe angle (degrees), stripe period (fraction of the width)
VARIETY_LOOKS = {
    "ADT45": ((55, 140, 50), 0, 0.10),
    "KarnatakaPonni": ((115, 165, 35), 18, 0.20),
    "Ponni": ((35, 105, 75), 36, 0.06),
    "AtchayaPonni": ((150, 170, 60), 54, 0.14),
    "Zonal": ((70, 175, 115), 72, 0.25),
    "AndraPonni": ((95, 120, 25), 90, 0.08),
    "Onthanel": ((25, 155, 35), 108, 0.18),
    "IR20": ((125, 140, 95), 126, 0.12),
    "RR": ((45, 85, 35), 144, 0.05),
    "Surya": ((175, 195, 95), 162, 0.30),
}
CANVAS_MAX = 160  # longest side of the drawing canvas; finer detail would only slow the sample down


def parse_wxh(text):
    """Turn "480x640" (WIDTH x HEIGHT) or "64" into a (width, height) tuple of positive ints."""
    return positive_pair(str(text).lower().split("x"),
                         f"size must be two positive ints WIDTHxHEIGHT like 480x640, got {text!r}")


def proportional_counts(n, weights):
    """Split `n` across the keys of `weights` in proportion, every key at least once when n allows."""
    names = list(weights)
    share = np.array([weights[k] for k in names], dtype=float)
    share = n * share / share.sum()
    counts = np.floor(share).astype(int)
    if n >= len(names):
        counts = np.maximum(counts, 1)
    order = np.argsort(-(share - np.floor(share)), kind="stable")  # largest remainder first
    i = 0
    while counts.sum() < n:
        counts[order[i % len(names)]] += 1
        i += 1
    while counts.sum() > n:  # the minimum of one overshot: take back from the biggest
        counts[np.argmax(counts)] -= 1
    return dict(zip(names, counts.tolist()))


def _shuffled(counts, rng):
    """A shuffled list holding each key `counts[key]` times."""
    items = np.array([k for k, c in counts.items() for _ in range(c)], dtype=object)
    rng.shuffle(items)
    return items.tolist()


GRAIN_MARGIN = 32  # the grain tile is this much larger than an image, so each image takes a different crop


def grain_tile(size, rng):
    """An RGB image of sensor-like noise centred on 128, a little larger than `size` (width, height)."""
    width, height = size
    noise = rng.integers(118, 139, size=(height + GRAIN_MARGIN, width + GRAIN_MARGIN, 3), dtype=np.uint8)
    return Image.fromarray(noise)


def draw_image(label, variety, size, rng, grain=None):
    """A PIL image of `size` (width, height) showing the signature of `label` on a leaf of `variety`."""
    width, height = size
    scale = min(1.0, CANVAS_MAX / max(width, height))
    cw, ch = max(8, round(width * scale)), max(8, round(height * scale))
    y, x = np.mgrid[0:ch, 0:cw].astype(np.float32)
    y, x = y / ch, x / cw
    tint, angle, period = VARIETY_LOOKS[variety]
    theta = np.deg2rad(angle + rng.uniform(-4, 4))
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + phase)
    canvas = np.array(tint, np.float32) * (1 + 0.18 * stripes[..., None])
    canvas += rng.normal(0, 6, size=(1, 1, 3))  # a little lighting variation per photo
    colour, count, half_h, half_w, (top, bottom) = DISEASE_LOOKS[label]
    for _ in range(rng.poisson(count) + 1 if count else 0):
        cy, cx = rng.uniform(top, bottom), rng.uniform(0.05, 0.95)
        ry, rx = half_h * rng.uniform(0.7, 1.3), half_w * rng.uniform(0.7, 1.3)
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
        canvas[inside] = np.array(colour, np.float32) + rng.normal(0, 8, size=3)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
    if grain is None:
        return image
    # Fine grain gives the JPEGs the weight (and decode cost) of photos; a shifted crop of one tile is cheap.
    left, top = rng.integers(0, GRAIN_MARGIN + 1, size=2).tolist()
    return ImageChops.add(image, grain.crop((left, top, left + width, top + height)), offset=-128)


def _check_out(out):
    """Refuse an OUT that holds anything, or a file, before anything is written."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not empty: choose a new folder or remove it")


def _train_frame(n_train, rng):
    """train.csv as a DataFrame: real labels and varieties in real proportions, ids from 100000.jpg."""
    labels = _shuffled(proportional_counts(n_train, competition.LABEL_COUNTS), rng)
    varieties = _shuffled(proportional_counts(n_train, competition.VARIETY_COUNTS), rng)
    ids = [f"{competition.FIRST_TRAIN_ID + i}.jpg" for i in range(n_train)]
    ages = rng.choice(competition.AGES, size=n_train).tolist()
    return pd.DataFrame({"image_id": ids, "label": labels, "variety": varieties, "age": ages})


def _test_targets(n_test, rng):
    """Hidden labels and varieties of the test images, drawn in the real proportions."""
    def draw(counts):
        names = list(counts)
        p = np.array([counts[k] for k in names], float)
        return rng.choice(names, size=n_test, p=p / p.sum()).tolist()
    return draw(competition.LABEL_COUNTS), draw(competition.VARIETY_COUNTS)


def _write_folder(root, train, tests, size, seed, progress):
    """Draw every image into the folder `root` (train rows, then (image_id, label, variety) tests), then the CSVs."""
    rng = np.random.default_rng([seed, 1])  # its own stream: the CSVs do not depend on how images are drawn
    grain = grain_tile(size, rng)
    for label in sorted(set(train["label"])):  # no empty label folders: `check` would flag them
        (root / competition.TRAIN_IMAGES / label).mkdir(parents=True)
    (root / competition.TEST_IMAGES).mkdir()
    jobs = [(root / competition.TRAIN_IMAGES / r.label / r.image_id, r.label, r.variety) for r in train.itertuples()]
    jobs += [(root / competition.TEST_IMAGES / image_id, label, variety) for image_id, label, variety in tests]
    for path, label, variety in progress_bar(jobs, leave=False) if progress else jobs:
        draw_image(label, variety, size, rng, grain).save(path, quality=90)
    train.to_csv(root / competition.TRAIN_CSV, index=False)
    submission = pd.DataFrame({"image_id": [t[0] for t in tests], "label": ""})
    submission.to_csv(root / competition.SAMPLE_SUBMISSION_CSV, index=False)


def make_sample(out, n_train=200, n_test=50, size=(480, 640), seed=42, progress=False,
                competition_slug=competition.COMPETITION):
    """Write a synthetic competition folder to `out` (size is WIDTH x HEIGHT) that stands in for competition
    `competition_slug` (its marker says so: the submissions log reads it); return its path."""
    out = Path(out)
    check_range("n_images", n_train, "n_train")
    check_range("n_images", n_test, "n_test")
    check_range("seed", seed)
    size = parse_wxh(size if isinstance(size, str) else "x".join(str(s) for s in size))
    with lock.hold(out, "sample folder"):
        atomic.remove_stale_temps(out)  # the half-drawn folder a killed `paddy sample OUT` left beside OUT
        _check_out(out)
        return _write_sample(out, n_train, n_test, size, seed, progress, competition_slug)


def _write_sample(out, n_train, n_test, size, seed, progress, competition_slug):
    rng = np.random.default_rng(seed)
    train = _train_frame(n_train, rng)
    test_ids = [f"{competition.FIRST_TEST_ID + i}.jpg" for i in range(n_test)]
    tests = list(zip(test_ids, *_test_targets(n_test, rng)))
    try:
        with atomic.atomic_dir(out) as tmp:
            _write_folder(tmp, train, tests, size, seed, progress)
            if competition_slug:
                write_competition(tmp, competition_slug)
    except OSError as error:
        raise DataError(f"cannot write {out}: {error.strerror or error}; choose a folder you can write to") from None
    return out
