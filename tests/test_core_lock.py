"""Output locks: one holder at a time, stale locks (dead PID) taken over, nothing left behind, one-line refusals."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paddy.core import atomic, lock
from paddy.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]  # the checkout: subprocesses import this paddy
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_held_lock_refuses_a_second_holder_in_one_line(tmp_path):
    target = tmp_path / "run"
    with lock.hold(target, "run folder") as path:
        assert path == tmp_path / ".run.lock"
        holder = json.loads(path.read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(ConfigError, match="in use by another paddy process") as caught:
            with lock.hold(target):
                pass
        assert f"PID {os.getpid()}" in str(caught.value) and "\n" not in str(caught.value)
    assert not path.exists()  # released: the lock file goes with it
    with lock.hold(target):  # and the next run gets it
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = lock.lock_path(tmp_path / "run")
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    with lock.hold(tmp_path / "run"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_dead_holder_whose_forked_workers_still_hold_the_flock_is_stale(tmp_path):
    # A killed run's orphans (DataLoader or resize workers) share its flock: the PID in the file decides.
    path = lock.lock_path(tmp_path / "run")
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    orphan = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "held"
        with lock.hold(tmp_path / "run"):
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        orphan.kill()
        orphan.wait()


def test_a_live_holder_of_another_process_is_respected(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from paddy.core import lock\n"
        f"with lock.hold({str(tmp_path / 'out.csv')!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(30)\n")], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"PID {holder.pid} "):
            with lock.hold(tmp_path / "out.csv"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock.hold(tmp_path / "out.csv"):  # killed: the kernel dropped its flock, the file it left is stale
        pass


def test_folders_made_for_a_lock_are_removed_when_nothing_was_written(tmp_path):
    with lock.hold(tmp_path / "a" / "b" / "run"):
        assert (tmp_path / "a" / "b").is_dir()
    assert not (tmp_path / "a").exists()
    with lock.hold(tmp_path / "a" / "b" / "run"):
        (tmp_path / "a" / "b" / "run").mkdir()  # the run wrote its folder: kept
    assert (tmp_path / "a" / "b" / "run").is_dir() and list((tmp_path / "a" / "b").iterdir()) == [
        tmp_path / "a" / "b" / "run"]


def test_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write .*choose a folder you can write to"):
        with lock.hold(tmp_path / "file" / "run"):
            pass


def test_stale_temps_are_the_atomic_writers_own_and_nothing_else(tmp_path):
    out = tmp_path / "sub.csv"
    with atomic.atomic_path(out) as tmp:
        temp_name = tmp.name
    keep = [".sub.csv.lock", "sub.csv", ".sub.csv.notes", ".other.csv.abcdefgh.csv", ".sub.csv.abc.csv"]
    stale = [temp_name, ".sub.csv.a1b2c3d4.csv", ".sub.csv.zz_zz_zz"]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    (tmp_path / ".sub.csv.q1w2e3r4.old").mkdir()  # atomic_dir's old copy
    stale.append(".sub.csv.q1w2e3r4.old")
    assert sorted(p.name for p in atomic.remove_stale_temps(out)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@pytest.mark.slow
def test_two_train_processes_on_one_folder(tiny_sample, tmp_path, capsys):
    """A run holds its folder: a second `paddy train --out R` gets one line and exit 2, the first finishes intact."""
    import paddy.vision.run  # noqa: F401  (imported before the race starts: fastai takes seconds to import)
    from paddy.cli.main import main

    out = tmp_path / "R"
    first = subprocess.Popen(
        [sys.executable, "-m", "paddy.cli.main", "train", str(tiny_sample), "--arch", "resnet10t", "--no-pretrained",
         "--no-finetune", "--size", "32", "--item-size", "48,48", "--epochs", "1", "--bs", "16", "--tta", "none",
         "--seed", "1", "--workers", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not lock.lock_path(out).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.lock_path(out).exists(), first.communicate()
        code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--no-pretrained", "--no-finetune", "--size",
                     "32", "--item-size", "48,48", "--epochs", "2", "--bs", "8", "--lr", "0.5", "--seed", "2",
                     "--tta", "none", "--workers", "0", "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "", captured
        assert captured.err.count("\n") == 1 and "is in use by another paddy process" in captured.err
        stdout, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, stderr
    config = json.loads((out / "config.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert (config["seed"], config["bs"], result["epochs"]) == (1, 16, 1)  # all of it from the first run
    assert not lock.lock_path(out).exists()
