"""Atomic file output: write to a temporary file beside the target, then `os.replace` it into place."""

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path


def _umask():
    """The process's umask (reading it means setting it, so put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; on success move it over `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix so writers that infer the format from it (savefig, to_csv) still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; the output should be as readable as any file
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, obj):
    """Write `obj` as indented JSON to `path` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_csv(path, frame, index=False):
    """Write a pandas DataFrame to `path` atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path, replace=False):
    """Yield a temporary folder beside `path`; on success it becomes `path`, on failure it is removed.

    An existing non-empty `path` is refused (OSError) unless `replace`, when the caller has checked it is its own
    output: then the old folder is moved aside and removed only after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700
    old = path.parent / f"{tmp.name}.old"
    try:
        yield tmp
        if path.exists():
            if replace:
                os.replace(path, old)
            else:
                path.rmdir()  # only an empty folder may be replaced; a full one raises OSError
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def stale_temps(path: str | Path) -> list[Path]:
    """Temporaries that `atomic_path`/`atomic_dir` left beside `path` when a run writing it was killed."""
    path = Path(path).absolute()
    # mkstemp/mkdtemp add 8 characters from [a-z0-9_]; atomic_dir's old copy adds ".old". Nothing else matches.
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}(\.old|" + re.escape(path.suffix) + ")?")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporaries a killed run left beside `path`; call it only while holding `path`'s lock."""
    removed = stale_temps(path)
    for temp in removed:
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
    return removed
