"""A competition folder's marker (`.paddy.json`): what the kit knows of a folder that its files do not say.

Today that is the Kaggle competition it holds (`competition`), which the submissions log records. `paddy sample`
writes it; `paddy ensemble --competition SLUG` (or `paddy sample --competition`) names it for a folder that has
none. A cache (`paddy resize`, JPEG or array) names its source folder, and the competition is read from there.
"""

import json
from pathlib import Path

from paddy.core import atomic
from paddy.data import competition
from paddy.data.array_cache import MANIFEST as ARRAY_MANIFEST  # an array cache's manifest names its source
from paddy.data.resize import MARKER as RESIZE_MARKER  # a resized copy's marker names its source folder

MARKER = ".paddy.json"
MAX_HOPS = 8  # a copy of a copy of ...: enough for any real chain, and a cycle cannot loop forever


def read_marker(data: str | Path, name: str = MARKER) -> dict:
    """The folder's marker as a dict; empty when there is none or it is unreadable."""
    try:
        marker = json.loads((Path(data) / name).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def write_competition(data: str | Path, slug: str) -> Path:
    """Record `slug` as the competition of folder `data` (other marker fields are kept)."""
    return atomic.write_json(Path(data) / MARKER, {**read_marker(data), "competition": str(slug)})


def folder_competition(data: str | Path | None) -> str:
    """The competition slug of folder `data`: its marker's, else its resize source's; "" when unknown."""
    if data is None:
        return ""
    path = Path(data)
    for _ in range(MAX_HOPS):
        slug = read_marker(path).get("competition")
        if isinstance(slug, str) and slug:
            return slug
        if path.resolve() == (Path(competition.KAGGLE_INPUT) / competition.COMPETITION).resolve():
            return competition.COMPETITION  # the real competition's input folder in a kernel (read-only)
        source = read_marker(path, RESIZE_MARKER).get("source") or read_marker(path, ARRAY_MANIFEST).get("source")
        if not isinstance(source, str) or not source:
            return ""
        path = Path(source)
    return ""
