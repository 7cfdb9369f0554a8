"""The CLI's contract for bad input: one line on stderr, exit code 2, nothing written."""

import shutil

import pytest
import torch

from paddy.cli.main import main
from paddy.core.config import TrainConfig, parse_size
from paddy.core.errors import ConfigError
from paddy.core.runtime import resolve_device


def run(argv):
    """The exit code of `paddy ARGV`, whether argparse exits or main returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_training_sizes_refuse_width_x_height():
    # `paddy sample --size 480x640` is width x height; a training size of "480x640" would silently mean the opposite.
    with pytest.raises(ConfigError, match="HEIGHT,WIDTH"):
        parse_size("480x640")
    assert parse_size("640,480") == (640, 480)


@pytest.mark.parametrize("device", ["foo", "cuda:x", "gpu"])
def test_unknown_device_is_a_config_error(device):
    with pytest.raises(ConfigError, match="device must be"):
        TrainConfig(arch="resnet10t", device=device)
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device(device)


def test_negative_workers_is_a_config_error():
    with pytest.raises(ConfigError, match="num_workers"):
        TrainConfig(arch="resnet10t", num_workers=-1)


@pytest.mark.parametrize("args, message", [
    (["--size", "480x640"], "HEIGHT,WIDTH"),
    (["--device", "foo"], "device must be"),
    (["--lr", "inf"], "--lr: value must be in 1e-08 to 10"),  # bounded, and the range said
    (["--workers", "-1"], "--workers: value must be in 0 to 64"),
])
def test_train_cli_bad_values_are_one_line_and_write_nothing(tiny_sample, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = run(["train", str(tiny_sample), "--arch", "resnet10t", "--no-pretrained", "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_os_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = run(["sample", str(blocker / "data"), "--n-train", "10", "--n-test", "2", "--size", "48x64"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("paddy sample: error:"), err


def test_train_summary_names_each_target_and_the_tta(tmp_path, capsys):
    # Was "valid error (TTA) {'label': 0.75, ...}": a dict repr, and "TTA" even with --tta none.
    import json

    # A stored config has its item size resolved; the command gives none, so it takes the stored one, not the data's.
    config = TrainConfig(arch="resnet10t", size=32, item_size=64, pretrained=False, tta="none")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    (out / "result.json").write_text(json.dumps({"run": config.run_name, "epochs": 2, "tta": "none",
                                                 "valid_error_tta": {"label": 0.75, "variety": 0.08333}}))
    code = run(["train", str(tmp_path), "--arch", "resnet10t", "--size", "32", "--no-pretrained", "--tta", "none",
                "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "valid error label 0.7500, variety 0.0833 (TTA none), skipped (complete)" in printed, printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_plan_asking_for_cuda_on_a_cpu_machine_is_refused_before_the_data_check(tiny_sample, tmp_path, capsys):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    (data / "test_images" / "200005.jpg").write_bytes(b"not a jpeg")  # the data check would fail on this...
    code = run(["train", str(data), "--plan", "tiny", "--runs", str(tmp_path / "runs"), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "CUDA is not available" in err, err  # ...but the device is refused first
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [["sample"], ["check"], ["resize"], ["demo"], ["ensemble"], ["submit"],
                                  ["submissions"], ["kernels"], ["kernels", "push"], ["kernels", "output"]])
def test_every_subcommand_help_says_what_it_does(argv, capsys):
    # The README promises that every command's --help says what it does: the summary `paddy --help` lists for it
    # must head its own --help too, not only a usage line and options.
    from paddy.cli.main import build_parser

    parser = build_parser()
    for name in argv:
        subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        summary = next(c.help for c in subparsers._choices_actions if c.dest == name)
        parser = subparsers.choices[name]
    assert run([*argv, "--help"]) == 0
    assert summary in " ".join(capsys.readouterr().out.split())


def test_a_training_log_holds_one_epoch_table_and_no_bar_updates(tiny_sample, tmp_path, capsys):
    code = run(["train", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--item-size", "48,48",
                "--no-pretrained", "--no-finetune", "--epochs", "1", "--bs", "16", "--tta", "2,0.25",
                "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run")])
    log = capsys.readouterr().out  # what `paddy train > log` gets: stdout is not a terminal here
    lines = [line.split("\r")[-1] for line in log.splitlines()]  # fastprogress starts each bar with "█\r"
    assert code == 0 and sum(line.startswith("epoch ") for line in lines) == 1, log  # tta printed more headers
    assert "%" not in log and "Epoch 1/1" not in log
