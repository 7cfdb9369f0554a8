"""Validate a competition folder and report every problem in one pass, not the first.

`check_data` returns a `CheckReport`; `require_valid` turns a bad report into one `DataError` line, and is what
train and probe call before they start. Every JPEG is decoded fully, in parallel threads (Pillow releases the GIL
while decoding), because a truncated file only shows itself when its last rows are decoded.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastprogress.fastprogress import progress_bar
from PIL import Image

from paddy.core.errors import DataError
from paddy.core.tables import read_csv
from paddy.data import array_cache, competition

EXPECTED = (competition.TRAIN_CSV, competition.SAMPLE_SUBMISSION_CSV, competition.TRAIN_IMAGES,
            competition.TEST_IMAGES)


@dataclass(frozen=True)
class CheckReport:
    """What `check_data` found: `problems` holds one line per problem; `ok` when there are none."""

    data: Path
    problems: list = field(default_factory=list)
    n_train_images: int = 0
    n_test_images: int = 0

    @property
    def ok(self):
        return not self.problems

    def lines(self, limit=20):
        """The problems as lines, at most `limit` of them plus one line counting the rest."""
        shown = list(self.problems[:limit])
        if len(self.problems) > limit:
            shown.append(f"... and {len(self.problems) - limit} more problems")
        return shown


def read_csv_checked(path, columns, problems):
    """Read `path` as a CSV of strings with exactly `columns`; on failure add a problem and return None."""
    if not path.is_file():
        problems.append(f"{path.name} is missing: a competition folder needs it")
        return None
    try:
        frame = read_csv(path, dtype=str, keep_default_na=False)
    except DataError as error:
        problems.append(str(error).replace(str(path), path.name, 1))  # the report names files within DATA
        return None
    if tuple(frame.columns) != tuple(columns):
        found = ",".join(str(c).encode("unicode_escape").decode() for c in frame.columns)  # keep it one line
        problems.append(f"{path.name} has columns {found}; expected {','.join(columns)}")
        return None
    return frame


def _duplicates(frame, name, problems):
    """Add a problem for each image_id listed more than once in `frame`."""
    for image_id in sorted(set(frame.loc[frame["image_id"].duplicated(), "image_id"])):
        problems.append(f"{name} lists {image_id} more than once")


def scan_train_images(data, problems):
    """Map each image id under train_images/<label>/ to the label folders holding it; flag empty and stray."""
    root = data / competition.TRAIN_IMAGES
    found = {}
    if not root.is_dir():
        problems.append(f"{competition.TRAIN_IMAGES}/ is missing: a competition folder needs it")
        return found
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            problems.append(f"{competition.TRAIN_IMAGES}/{entry.name} is a file outside any label folder")
            continue
        files = sorted(p for p in entry.iterdir() if p.is_file())
        if not files:
            problems.append(f"{competition.TRAIN_IMAGES}/{entry.name}/ is an empty label folder")
        for path in files:
            found.setdefault(path.name, []).append(entry.name)
    return found


def scan_test_images(data, problems):
    """The set of image file names directly under test_images/."""
    root = data / competition.TEST_IMAGES
    if not root.is_dir():
        problems.append(f"{competition.TEST_IMAGES}/ is missing: a competition folder needs it")
        return set()
    return {p.name for p in root.iterdir() if p.is_file()}


def compare_train(train, on_disk):
    """Problems between train.csv (a DataFrame) and the images found on disk (id -> label folders)."""
    listed = dict(zip(train["image_id"], train["label"]))
    # An empty label names no folder: say that, not "train.csv says " or "train_images//<id> is missing".
    unlabelled = {image_id for image_id, label in listed.items() if not label.strip()}
    problems = [f"train.csv has no label for {image_id}: fill in its label" for image_id in sorted(unlabelled)]
    for image_id, folders in sorted(on_disk.items()):
        if len(folders) > 1:
            problems.append(f"{image_id} is in several label folders: {', '.join(folders)}")
        if image_id not in listed:
            problems.append(f"{competition.TRAIN_IMAGES}/{folders[0]}/{image_id} is not listed in train.csv")
        elif image_id not in unlabelled and listed[image_id] not in folders:
            problems.append(f"{competition.TRAIN_IMAGES}/{folders[0]}/{image_id} is in folder {folders[0]} "
                            f"but train.csv says {listed[image_id]}")
    for image_id, label in listed.items():
        if image_id not in on_disk and image_id not in unlabelled:
            problems.append(f"train.csv lists {image_id} but {competition.TRAIN_IMAGES}/{label}/{image_id} is missing")
    return problems


def compare_test(submission, on_disk):
    """Problems between sample_submission.csv (a DataFrame) and the file names under test_images/."""
    listed = set(submission["image_id"])
    problems = [f"{competition.SAMPLE_SUBMISSION_CSV} lists {i} but {competition.TEST_IMAGES}/{i} is missing"
                for i in sorted(listed - on_disk)]
    problems += [f"{competition.TEST_IMAGES}/{i} is not listed in {competition.SAMPLE_SUBMISSION_CSV}"
                 for i in sorted(on_disk - listed)]
    return problems


def decode_problem(path):
    """None if `path` is a JPEG that decodes fully, else one line saying why not."""
    try:
        with Image.open(path) as image:
            image.load()
            kind = image.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable or truncated image ({error})"
    return None if kind == "JPEG" else f"is a {kind} image, not a JPEG"


def decode_all(data, paths, workers=None, progress=True):
    """Decode every image in `paths` fully, in parallel; one problem line per image that fails."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode_problem, paths)
        if progress and paths:
            results = progress_bar(results, total=len(paths), leave=False)
        return [f"{path.relative_to(data)}: {why}" for path, why in zip(paths, results) if why]


def check_data(data, workers=None, progress=True):
    """Check the competition folder (or array cache) `data` in one pass; a CheckReport of every problem found."""
    data = Path(data)
    if not data.is_dir():
        return CheckReport(data, [f"{data} does not exist or is not a folder: pass a competition folder"])
    if array_cache.is_array_cache(data):  # its images were decoded when it was written: check the arrays instead
        problems, n_train, n_test = array_cache.check_cache(data)
        return CheckReport(data, problems, n_train_images=n_train, n_test_images=n_test)
    if not any((data / name).exists() for name in EXPECTED):
        return CheckReport(data, [f"{data} is not a competition folder: it has none of {', '.join(EXPECTED)}"])
    problems = []
    train = read_csv_checked(data / competition.TRAIN_CSV, competition.TRAIN_COLUMNS, problems)
    submission = read_csv_checked(data / competition.SAMPLE_SUBMISSION_CSV, competition.SUBMISSION_COLUMNS, problems)
    train_found = scan_train_images(data, problems)
    test_found = scan_test_images(data, problems)
    if train is not None:
        _duplicates(train, competition.TRAIN_CSV, problems)
        problems += compare_train(train, train_found)
    if submission is not None:
        _duplicates(submission, competition.SAMPLE_SUBMISSION_CSV, problems)
        problems += compare_test(submission, test_found)
    paths = [data / competition.TRAIN_IMAGES / label / image_id
             for image_id, labels in sorted(train_found.items()) for label in labels]
    paths += [data / competition.TEST_IMAGES / image_id for image_id in sorted(test_found)]
    problems += decode_all(data, paths, workers=workers, progress=progress)
    return CheckReport(data, problems, n_train_images=sum(map(len, train_found.values())),
                       n_test_images=len(test_found))


def require_valid(data, workers=None, progress=True):
    """Check `data` and raise one DataError line summarising the problems; return the report when clean."""
    report = check_data(data, workers=workers, progress=progress)
    if not report.ok:
        first = "; ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise DataError(f"{report.data} has {len(report.problems)} problem(s): {first}{more}; "
                        f"run `paddy check {report.data}` for the full list")
    return report
