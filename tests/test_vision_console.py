"""What long commands print: each step as it starts, fastai's epoch table, and no bar characters in a log."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddy.cli.main import main
from paddy.vision.console import EpochTable

BAR_CHARACTERS = ("█", "\r")  # fastprogress's fill and the carriage return that redraws a bar


def test_epoch_table_prints_fastais_layout_one_flushed_line_each():
    lines = []
    table = EpochTable(write=lines.append)
    table.names = None
    table.log_row(["epoch", "train_loss", "valid_loss", "error_rate", "time"])
    table.log_row([0, 2.302585, 2.1, 0.875, "00:03"])
    assert lines == ["epoch     train_loss  valid_loss  error_rate  time    ",
                     "0         2.302585    2.100000    0.875000    00:03"]


def test_probe_says_what_it_does_at_once_and_prints_no_bars_into_a_file(tiny_sample, tmp_path):
    log = tmp_path / "probe.log"
    command = [sys.executable, "-m", "paddy.cli.main", "probe", str(tiny_sample), "--arch", "resnet10t",
               "--size", "32", "--bs", "8", "--max-accum", "1", "--max-images", "8", "--device", "cpu",
               "--no-subprocess"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with log.open("w") as stdout:  # stdout is a file, as in `paddy probe ... > log`
        done = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    lines = text.splitlines()
    assert lines[0] == f"checking {tiny_sample} (136 images)..."  # before the check decodes every image
    assert lines[1].startswith("probing resnet10t at 32x32, accum 1 (micro-batch 8) on cpu")
    assert not any(c in text for c in BAR_CHARACTERS)


@pytest.mark.slow
def test_train_prints_steps_and_the_epoch_table_without_bar_characters(tiny_sample, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--item-size", "64,48",
                 "--epochs", "1", "--bs", "8", "--no-pretrained", "--tta", "flip", "--workers", "0",
                 "--device", "cpu", "--out", str(out)])
    text = capsys.readouterr().out  # captured: not a terminal, like a log file
    assert code == 0
    assert not any(c in text for c in BAR_CHARACTERS)
    lines = text.splitlines()
    assert lines[0] == f"checking {tiny_sample} (136 images)..."
    assert lines[1].startswith("training resnet10t-squish64x48-32x32: resnet10t, 1 epochs, 96 train / 24 valid")
    assert lines[2].split() == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    assert lines[3].split()[0] == "0" and lines[4].startswith("predicting")


def test_check_says_what_it_does_before_the_work_in_a_log(tiny_sample, capsys):
    assert main(["check", str(tiny_sample)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"checking {tiny_sample} (136 images)..." and "ok" in lines[1]
    assert not any(c in text for c in BAR_CHARACTERS)


@pytest.mark.slow
def test_a_library_run_into_a_log_prints_the_table_and_no_bars(tiny_sample, tmp_path, capsys):
    # A lane's process or a script with stdout in a file: fastprogress would take it for a terminal.
    from paddy.core.config import TrainConfig
    from paddy.vision.run import train_run

    config = TrainConfig(arch="resnet10t", size=32, item_size=(64, 48), bs=8, epochs=1, pretrained=False,
                         num_workers=0, device="cpu", tta="none")
    train_run(tiny_sample, config, tmp_path / "run")
    text = capsys.readouterr().out
    assert not any(c in text for c in BAR_CHARACTERS)
    assert text.splitlines()[0].split() == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
