"""`paddy collab --out` takes its output's lock (issue 17 item 4) and clears what a killed run left (item 7)."""

import os

from test_collab_cli import run, write_ratings

from paddy.core import lock


def test_a_collab_output_in_use_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    ratings = write_ratings(tmp_path / "r.csv", 12, 6)
    with lock.hold(out, "collab output"):
        code, _, err = run(capsys, "collab", "--data", str(ratings), "--epochs", "1", "--out", str(out), "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"is in use by another paddy process (PID {os.getpid()}" in err
    assert not out.exists()


def test_a_killed_collab_runs_half_built_folder_goes_with_the_next_run(tmp_path, capsys):
    out = tmp_path / "out"
    half = tmp_path / ".out.abc12345"  # what atomic_dir names a folder it is still building beside OUT
    half.mkdir()
    (half / "model.pth").write_bytes(b"partial")
    ratings = write_ratings(tmp_path / "r.csv", 12, 6)
    code, _, err = run(capsys, "collab", "--data", str(ratings), "--epochs", "1", "--out", str(out), "--quiet")
    assert code == 0, err
    assert not half.exists() and (out / "metrics.json").is_file()
