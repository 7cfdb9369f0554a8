"""Cached smaller copies of a competition folder: same layout, same aspect ratio, CSVs alongside.

On 2-core machines training reads JPEGs faster than it can decode them, so a copy at `max_size` pays for itself
(the fastai notebooks' `resize_images(max_size=256)`). Files are resized in parallel processes with Pillow's JPEG
draft mode (the decoder scales by 1/2, 1/4 or 1/8 while decoding), each written atomically, and a rerun skips
every copy that is newer than its original. A corrupt image is reported at the end; the rest are still written.
"""

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastprogress.fastprogress import progress_bar
from PIL import Image

from paddy.core import atomic, lock, runtime
from paddy.core.config import check_range
from paddy.core.errors import ConfigError, DataError
from paddy.data import competition
from paddy.data.check import EXPECTED, read_csv_checked

MARKER = ".paddy-resize.json"  # records max_size: copies made at another size are never "up to date"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ResizeSummary:
    """What `resize_folder` did."""

    out: Path
    max_size: int
    resized: int
    skipped: int
    csvs: int
    seconds: float
    removed: int = 0

    def describe(self):
        """One line for the command line."""
        removed = f", {self.removed} copies of images no longer in the data removed" if self.removed else ""
        return (f"resized {self.resized} images to at most {self.max_size} px into {self.out} "
                f"({self.skipped} already up to date, {self.csvs} CSVs copied{removed}) in {self.seconds:.1f} s")


def target_size(size, max_size):
    """(width, height) scaled so the longer side is `max_size`; unchanged when it already fits."""
    width, height = size
    scale = max_size / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(src, dst, max_size):
    """Write a copy of `src` at most `max_size` px on its longer side to `dst`; None, or a line saying what failed."""
    try:
        with Image.open(src) as image:
            size = target_size(image.size, max_size)
            image.draft("RGB", size)  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
            image = image.convert("RGB")  # .convert decodes fully: a truncated file fails here
            if image.size != size:
                image = image.resize(size, Image.BILINEAR)
        with atomic.atomic_path(dst) as tmp:
            image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        dst.unlink(missing_ok=True)  # an older copy (maybe of another size) no longer matches its original
        return f"{src}: {error}"
    return None


def _resize_job(job):
    """Unpack one (src, dst, max_size) job for the process pool."""
    return resize_image(*job)


def check_folders(data, out, max_size):
    """Raise before anything is written: DATA not a competition folder, a bad CSV, OUT in DATA, unwritable or made
    from another DATA; return OUT's marker (see `read_marker`)."""
    if not isinstance(max_size, int) or max_size <= 0:
        raise ConfigError(f"max_size must be a positive integer, got {max_size!r}")
    if not data.is_dir():
        raise DataError(f"{data} does not exist or is not a folder: pass a competition folder to resize")
    missing = [name for name in EXPECTED if not (data / name).exists()]
    if missing:
        raise DataError(f"{data} is not a competition folder: it lacks {', '.join(missing)}")
    problems = []  # an unreadable CSV would make OUT a broken copy: refuse it up front
    read_csv_checked(data / competition.TRAIN_CSV, competition.TRAIN_COLUMNS, problems)
    read_csv_checked(data / competition.SAMPLE_SUBMISSION_CSV, competition.SUBMISSION_COLUMNS, problems)
    if problems:
        raise DataError(f"{data}: {'; '.join(problems)}; fix it (paddy check {data}) before resizing")
    if out == data or data in out.parents:
        raise DataError(f"{out} is inside {data}: write the resized copy to a folder outside the data")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder: choose another output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out}: {error.strerror or error}; choose a folder you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DataError(f"cannot write to {out}: choose a folder you can write to")
    marker = read_marker(out)
    source = marker.get("source")
    if source and source != str(data):  # same image names, other pixels: its copies would pass for up to date
        raise DataError(f"{out} holds copies of {source}, not {data}: choose another output folder or remove it")
    return marker


def read_marker(out):
    """What the last resize into `out` recorded (max_size, source); empty when there is none or it is unreadable."""
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def plan_jobs(data, out, max_size, marker):
    """(src, dst, max_size) for every image whose copy is missing, older than the original, or of another size
    (`marker`: what the last resize into OUT recorded: copies at its max_size are those written since "since")."""
    same_size = marker.get("max_size") == max_size
    since = marker.get("since", 0.0) if same_size else 0.0  # a marker without "since" was written on completion
    sources = sorted((data / competition.TRAIN_IMAGES).glob("*/*")) + sorted((data / competition.TEST_IMAGES).glob("*"))
    jobs, skipped = [], 0
    for src in (p for p in sources if p.is_file()):
        dst = out / src.relative_to(data)
        if same_size and dst.is_file() and dst.stat().st_mtime >= max(src.stat().st_mtime, since):
            skipped += 1
        else:
            jobs.append((src, dst, max_size))
    return jobs, skipped


def remove_stale(data, out):
    """Delete copies in `out` whose original left `data` (moved to another label, deleted); return how many."""
    copies = sorted((out / competition.TRAIN_IMAGES).glob("*/*")) + sorted((out / competition.TEST_IMAGES).glob("*"))
    stale = [p for p in copies if p.is_file() and not (data / p.relative_to(out)).is_file()]
    for path in stale:
        path.unlink()
    for folder in (out / competition.TRAIN_IMAGES).glob("*"):
        if folder.is_dir() and not any(folder.iterdir()):  # `paddy check` flags an empty label folder
            folder.rmdir()
    return len(stale)


def run_jobs(jobs, workers, progress=True):
    """Resize every job, in `workers` processes (in this process when 1); return the failure lines."""
    if not jobs:
        return []
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers == 1:
        results = map(_resize_job, jobs)
        return [r for r in (progress_bar(results, total=len(jobs), leave=False) if progress else results) if r]
    chunksize = max(1, min(32, len(jobs) // (workers * 4)))  # large enough to amortise pickling, small for balance
    with ProcessPoolExecutor(max_workers=workers, initializer=runtime.die_with_parent, initargs=(os.getpid(),)) as pool:
        results = pool.map(_resize_job, jobs, chunksize=chunksize)
        return [r for r in (progress_bar(results, total=len(jobs), leave=False) if progress else results) if r]


def copy_csvs(data, out):
    """Copy every CSV at the top of `data` into `out`, atomically; return how many."""
    csvs = sorted(data.glob("*.csv"))
    for path in csvs:
        with atomic.atomic_path(out / path.name) as tmp:
            shutil.copyfile(path, tmp)
    return len(csvs)


def resize_folder(data, out, max_size, workers=None, progress=True):
    """Write copies of the competition folder `data` to `out`, longer side at most `max_size`; return a summary."""
    start = time.perf_counter()
    data, out = Path(data).resolve(), Path(out).resolve()
    check_range("side", max_size, "max_size")
    if workers is not None:
        check_range("workers", workers)
    with lock.hold(out, "resize output"):
        return _resize_locked(data, out, max_size, workers, progress, start)


def _resize_locked(data, out, max_size, workers, progress, start):
    marker = check_folders(data, out, max_size)
    # Only copies this DATA made are ours to delete: a folder with no marker may hold someone else's files.
    ours = marker.get("source") == str(data)
    if marker.get("max_size") != max_size:
        # Progress is recorded as it goes: a copy written after "since" is at max_size, so a killed run resumes
        # where it stopped, and copies at an older size (written before "since") are redone.
        marker = {"max_size": max_size, "source": str(data), "since": time.time()}
        atomic.write_json(out / MARKER, marker)
    jobs, skipped = plan_jobs(data, out, max_size, marker)
    removed = remove_stale(data, out) if ours else 0
    failed = run_jobs(jobs, workers, progress=progress)  # an image that failed has no copy: a rerun retries it
    csvs = copy_csvs(data, out)
    if failed:
        shown = "; ".join(failed[:3]) + (f" (and {len(failed) - 3} more)" if len(failed) > 3 else "")
        raise DataError(f"{len(failed)} of {len(jobs) + skipped} images could not be read and were not copied: "
                        f"{shown}; the other {len(jobs) - len(failed) + skipped} are in {out}")
    return ResizeSummary(out, max_size, len(jobs), skipped, csvs, time.perf_counter() - start, removed)
