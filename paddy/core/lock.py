"""Exclusive locks on outputs: one paddy process writes a run folder, a resized copy or a submission at a time.

The lock of `target` is the file `.<name>.lock` beside it, holding the holder's PID, host and start time, and
kept `flock`ed for the whole run. The kernel drops a flock when its process dies, so a lock file left by a killed
run is stale and the next run takes it over. A flock is shared with forked children (DataLoader or resize
workers): if such orphans outlive a killed holder, the lock still counts as stale once the PID it names is dead
on this host.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from paddy.core.errors import ConfigError

SUFFIX = ".lock"


def lock_path(target: str | Path) -> Path:
    """Where the lock of `target` (a file or folder, existing or not) lives: `.<name>.lock` beside it."""
    target = Path(target).absolute()
    if not target.name:
        raise ConfigError(f"{target} cannot be an output: choose a named file or folder")
    return target.parent / f".{target.name}{SUFFIX}"


def pid_alive(pid: object) -> bool:
    """True when process `pid` exists on this host (a zombie counts as dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    with contextlib.suppress(OSError):
        # `kill 0` succeeds on a zombie, which holds no resources: read its state where /proc exists.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_holder(path: str | Path) -> dict:
    """What a lock file says about its holder ({} when it is missing, empty or unreadable)."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(holder: dict) -> bool:
    """True when the holder named in a lock file is a process of this host that no longer runs."""
    return holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid"))


def _made_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, deepest first (removed on release)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
    return missing


def _try_flock(path: Path) -> int | None:
    """An open descriptor of `path` holding its exclusive flock, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The holder before us may have unlinked the file between our open and our flock: lock the live file.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _busy_line(target: Path, path: Path, holder: dict, what: str) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    since = holder.get("started")
    when = f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
    return (f"{what} {target} is in use by another paddy process (PID {pid} on {host}{when}); wait for it to "
            f"finish or stop it (a lock left by a dead process is taken over: {path})")


def acquire(target: str | Path, what: str = "output") -> tuple[int, Path, list]:
    """Take the lock of `target`: (descriptor, lock file, folders made for it); ConfigError when it is held."""
    target = Path(target).absolute()
    path = lock_path(target)
    made = []
    try:
        made = _made_parents(path.parent)
        fd = _try_flock(path)
    except OSError as error:  # a parent that is a file, a read-only or full disk: the user's to fix
        _remove_empty(made)
        raise ConfigError(f"cannot write {target}: {error.strerror or error} ({error.filename or path}); "
                          "choose a folder you can write to") from None
    if fd is None:
        holder = read_holder(path)
        if not is_stale(holder):
            _remove_empty(made)
            raise ConfigError(_busy_line(target, path, holder, what))
        # Its PID is dead but forked workers still hold the flock: replace the file, they will not write it.
        path.unlink(missing_ok=True)
        fd = _try_flock(path)
        if fd is None:
            _remove_empty(made)
            raise ConfigError(_busy_line(target, path, read_holder(path), what))
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "target": str(target)}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(record) + "\n").encode())
    return fd, path, made


def release(fd: int, path: Path, made: list) -> None:
    """Drop a lock taken by `acquire`: remove its file (while still holding it), then the folders made for it."""
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            path.unlink()
    os.close(fd)
    _remove_empty(made)


def _remove_empty(folders: list) -> None:
    for folder in folders:  # deepest first; a folder that got content is kept
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def hold(target: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold the exclusive lock of `target` for the with block; ConfigError (one line) when another process has it."""
    fd, path, made = acquire(target, what)
    try:
        yield path
    finally:
        release(fd, path, made)
