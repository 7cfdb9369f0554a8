"""Atomic writes leave files like a plain open() would."""

import os

from paddy.core import atomic


def test_atomic_files_get_the_usual_permissions(tmp_path):
    # mkstemp makes its file 0600: without a fix every run folder, copy and submission was private to its writer.
    umask = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_folders_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
