"""Data-parallel training on CPU (gloo): the same global batch gives the same training as one process; a run
trained on 2 processes writes one complete run folder; a killed run resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddy.vision.distributed import free_port, rank_env

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _run_worker(out, devices, global_bs, accum):
    port = free_port()
    env_of = [rank_env(rank, devices, port, "cpu") for rank in range(devices)] if devices > 1 else [None]
    processes = []
    for env in env_of:
        env = dict(env or __import__("os").environ)
        env["PYTHONPATH"] = str(ROOT)
        processes.append(subprocess.Popen([sys.executable, str(WORKER), str(out), str(global_bs), str(accum)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    return json.loads(Path(out).read_text())


@pytest.mark.parametrize("accum", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, accum):
    one = _run_worker(tmp_path / "one.json", 1, 16, accum)
    two = _run_worker(tmp_path / "two.json", 2, 16, accum)
    # Same images in each global micro-batch, gradients averaged: equal up to float summation order.
    np.testing.assert_allclose(two["valid_loss"], one["valid_loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def _metrics(run):
    from paddy.vision.history import read_metrics

    return read_metrics(run)


TINY = ["--arch", "test_convnext", "--size", "32", "--item-size", "64,48", "--bs", "16", "--epochs", "2",
        "--no-finetune", "--no-pretrained", "--tta", "none", "--workers", "0", "--device", "cpu"]


def test_paddy_train_devices_2_writes_one_complete_run_folder(tiny_sample, tmp_path, capsys):
    from paddy.cli.main import main
    from paddy.core import run_folder

    assert main(["train", str(tiny_sample), *TINY, "--out", str(tmp_path / "one")]) == 0
    assert main(["train", str(tiny_sample), *TINY, "--devices", "2", "--out", str(tmp_path / "two")]) == 0
    assert "on 2 devices" in capsys.readouterr().out
    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert run_folder.is_complete(two) and not (two / run_folder.CHECKPOINTS).exists()
    assert [p for p in tmp_path.iterdir()] and sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    result = json.loads((two / run_folder.RESULT).read_text())
    assert (result["devices"], result["epochs"], result["micro_bs"]) == (2, 2, 16)  # the global config is stored
    # Augmentations are drawn per process, so the runs differ by their random draws: 2 epochs of a random-init
    # model on 96 images, valid losses within 35% of each other (the exact equivalence is tested above).
    for a, b in zip(_metrics(tmp_path / "one"), _metrics(two), strict=True):
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=0.35)


def test_devices_must_split_the_batch(tiny_sample, tmp_path, capsys):
    from paddy.cli.main import main

    code = main(["train", str(tiny_sample), *TINY, "--bs", "6", "--accum", "2", "--devices", "2", "--out",
                 str(tmp_path / "x")])
    assert code == 2 and "does not split into 2 devices x accum 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_killed_data_parallel_run_resumes(tiny_sample, tmp_path):
    import os
    import signal
    import time

    from paddy.core import run_folder

    out = tmp_path / "run"
    command = [sys.executable, "-m", "paddy.cli.main", "train", str(tiny_sample), *TINY, "--epochs", "4",
               "--devices", "2", "--checkpoint-every", "0", "--out", str(out)]  # a checkpoint every epoch
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    progress = out / run_folder.CHECKPOINTS / "progress.json"
    deadline = time.monotonic() + 400
    while not progress.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the launcher and both processes, as a lost machine would
    first.wait()
    assert progress.is_file() and not run_folder.is_complete(out)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / run_folder.RESULT).read_text())
    assert result["resumed_from"][1] >= 1 and len(_metrics(out)) == 4
