"""An array cache as a private Kaggle dataset, so member kernels read arrays instead of decoding JPEGs there too.

Pure builders (slug, metadata, digest, the members' check) and one local side effect (`stage_cache`: a folder of
hard links to the cache's files plus dataset-metadata.json, so the cache itself is never written to);
`paddy.kaggle.client.send_cache` performs the upload.
"""

import hashlib
import os
import shutil
from pathlib import Path

from paddy.core import atomic
from paddy.core.errors import ConfigError
from paddy.data import array_cache
from paddy.data.competition import KAGGLE_INPUT
from paddy.kaggle.names import check_user

DATASET_METADATA_FILE = "dataset-metadata.json"
CACHE_FILES = (array_cache.MANIFEST, array_cache.INDEX, "train.npy", "test.npy", "train.csv", "sample_submission.csv")


def cache_slug(info: dict) -> str:
    """The dataset slug of a cache, from its manifest: paddy-cache-<method><height>x<width>."""
    height, width = info["item_size"]
    return f"paddy-cache-{info['item_method']}{height}x{width}"


def cache_ref(user: str, cache: str | Path) -> str:
    """USER/SLUG of the dataset that holds `cache`."""
    return f"{check_user(user)}/{cache_slug(array_cache.read_manifest(cache))}"


def cache_input(cache: str | Path) -> str:
    """Where a kernel finds the cache dataset: /kaggle/input/<slug>."""
    return f"{KAGGLE_INPUT}/{cache_slug(array_cache.read_manifest(cache))}"


def cache_digest(info: dict) -> str:
    """What identifies a cache's content: its source digest, item transform and array sizes."""
    fields = [info["source_digest"], info["item_method"], *map(str, info["item_size"] + info["stored_size"])]
    fields += [str(info["arrays"][split]["bytes"]) for split in array_cache.SPLITS]
    return hashlib.sha256("\n".join(fields).encode()).hexdigest()[:16]


def cache_metadata(user: str, cache: str | Path) -> dict:
    """dataset-metadata.json of a cache dataset (private: the competition's images stay within its rules)."""
    info = array_cache.read_manifest(cache)
    height, width = info["item_size"]
    size_gb = sum(a["bytes"] for a in info["arrays"].values()) / 1e9
    return {"id": f"{check_user(user)}/{cache_slug(info)}",
            "title": f"paddy array cache {info['item_method']} {height}x{width}",
            "licenses": [{"name": "other"}],
            "description": (f"paddy array cache: train/test images decoded through {info['item_method']} "
                            f"{height}x{width}, uint8 arrays, {size_gb:.2f} GB (digest {cache_digest(info)}).")}


def check_members(members: tuple, cache: str | Path) -> tuple:
    """The members with their item size taken from the cache when unset; ConfigError naming a member whose item
    size or method the cache does not hold (its kernel would be refused on Kaggle, after the upload)."""
    info = array_cache.read_manifest(cache)
    resolved = tuple(m if m.item_size is not None else m.replace(item_size=tuple(info["item_size"]))
                     for m in members)
    for member in resolved:
        problems = array_cache.request_problems(cache, info, member.item_size, member.item_method)
        if problems:
            raise ConfigError(f"plan member {member.run_name}: {problems[0]}")
    return resolved


def stage_cache(user: str, cache: str | Path, stage: str | Path) -> tuple[dict, str]:
    """Build the upload folder `stage` (hard links to the cache's files, copies across file systems, and
    dataset-metadata.json); return (metadata, digest)."""
    array_cache.require_cache(cache, check_source=False)  # never upload a truncated array
    meta, digest = cache_metadata(user, cache), cache_digest(array_cache.read_manifest(cache))
    with atomic.atomic_dir(stage, replace=True) as folder:
        for name in CACHE_FILES:
            try:
                os.link(Path(cache) / name, folder / name)
            except OSError:  # another file system: a copy
                shutil.copyfile(Path(cache) / name, folder / name)
        atomic.write_json(folder / DATASET_METADATA_FILE, meta)
    return meta, digest

