"""Remembered checks: a folder that passed `paddy check` is not decoded again until one of its files changes.

`require_valid` decodes every image (on the real competition, 13,876 JPEGs: about a minute on two cores), and a
competitor's day runs it in `paddy check`, `paddy probe` and `paddy train`. A clean verdict is kept under the
user's cache folder, keyed by the folder's path and a digest of every file's name, size and modification time,
so any change (a truncated copy, a moved image, an edited CSV) brings the full check back. Only clean verdicts
are kept: a folder with problems is checked, and reported, every time.
"""

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from paddy.core import atomic
from paddy.data import competition
from paddy.data.check import CheckReport, check_data, require_valid

VERSION = 1  # bump when the check itself changes: older verdicts no longer vouch for a folder


def cache_folder() -> Path:
    """Where verdicts live: $XDG_CACHE_HOME/paddy/checked, else ~/.cache/paddy/checked."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddy" / "checked"


def _files(data: Path) -> Iterator[os.DirEntry]:
    """Every file the check reads: top-level files (the CSVs), train_images/*/*, test_images/*."""
    folders = [data, data / competition.TEST_IMAGES]
    train = data / competition.TRAIN_IMAGES
    if train.is_dir():
        folders += sorted(p for p in train.iterdir() if p.is_dir())
    for folder in folders:
        if folder.is_dir():
            with os.scandir(folder) as entries:
                yield from sorted((e for e in entries if e.is_file()), key=lambda e: e.name)


def folder_digest(data: str | Path) -> str:
    """A digest of the check's version and every checked file's path, size and modification time."""
    data = Path(data).resolve()
    digest = hashlib.sha256(f"{VERSION}\0{data}".encode())
    for entry in _files(data):
        stat = entry.stat()
        digest.update(f"\0{os.path.relpath(entry.path, data)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _verdict_path(data: Path) -> Path:
    key = hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:32]
    return cache_folder() / f"{key}.txt"


def is_known_valid(data: str | Path, digest: str | None = None) -> bool:
    """True when `data` passed a check and no file of it changed since (`digest`: its folder_digest, if known)."""
    try:
        return _verdict_path(data).read_text().strip() == (digest or folder_digest(data))
    except OSError:
        return False


def remember_valid(data: str | Path, digest: str | None = None) -> None:
    """Record that `data` passed the check as it was at `digest` (default: now); an unwritable cache is skipped."""
    try:
        atomic.write_text(_verdict_path(data), (digest or folder_digest(data)) + "\n")
    except OSError:
        pass  # a read-only home only costs the next command a full check


def require_valid_once(data: str | Path, progress: bool = True) -> CheckReport | None:
    """`require_valid`, skipped when the folder passed it unchanged before; None when skipped."""
    digest = folder_digest(data)  # before the check: a file changed while it ran is checked again next time
    if is_known_valid(data, digest):
        return None
    report = require_valid(data, progress=progress)
    remember_valid(data, digest)
    return report


def check_and_remember(data: str | Path, progress: bool = True) -> CheckReport:
    """`check_data` in full (what `paddy check` runs), remembering a clean verdict for the commands after it."""
    digest = folder_digest(data) if Path(data).is_dir() else None
    report = check_data(data, progress=progress)
    if report.ok and digest:
        remember_valid(data, digest)
    return report
