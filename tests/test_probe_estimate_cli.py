"""`paddy probe --estimate`: the probe's outputs without a GPU, the plan written back, bad input in one line."""

import pandas as pd
import pytest
import torch

from paddy.cli.main import main
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.probe.run import ESTIMATED, choose_accum

PLAN = """budget_gb = 4.0

[defaults]
bs = 16
epochs = 1
pretrained = false
finetune = false
item_size = [48, 48]

[[members]]
arch = "resnet10t"
size = [32, 32]
{extra}"""
UNTRACEABLE = """
[[members]]
arch = "vit_tiny_patch16_224"
size = [32, 32]
"""  # its patch embedding wants 224 px: the trace fails, as a real run would


def test_estimate_writes_the_probes_outputs_with_estimated_columns(tiny_sample, tmp_path, capsys):
    code = main(["probe", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--bs", "16", "--estimate",
                 "--gpu", "t4", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and ESTIMATED in out and "budget 15 GB" in out
    frame = pd.read_csv(tmp_path / "out" / "probe.csv")
    assert list(frame["accum"]) == [1] and frame["estimated_total_mb"][0] > frame["estimated_alloc_mb"][0] > 0
    assert (tmp_path / "out" / "probe.png").stat().st_size > 0


def test_estimate_writes_the_chosen_accum_into_the_plan(tiny_sample, tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(extra=""))
    assert main(["probe", str(tiny_sample), "--plan", str(plan), "--estimate", "--write-plan"]) == 0
    assert "accum (estimated, no GPU)" in capsys.readouterr().out
    assert "accum = 1" in plan.read_text()


def test_an_untraceable_member_is_one_line_the_others_are_estimated_and_the_exit_is_2(tiny_sample, tmp_path,
                                                                                     capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(extra=UNTRACEABLE))
    before = plan.read_text()
    code = main(["probe", str(tiny_sample), "--plan", str(plan), "--estimate", "--write-plan"])
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert code == 2 and len(errors) == 1 and "Traceback" not in captured.err
    assert errors[0].startswith("paddy probe: error: vit_tiny_patch16_224-") and "cannot trace" in errors[0]
    assert "- resnet10t-squish48x48-32x32: 1" in captured.out
    assert plan.read_text() == before  # nothing written when a member has no accum


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU answer")
def test_check_without_a_gpu_says_so_in_one_line(tiny_sample, capsys):
    code = main(["probe", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--estimate", "--check"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no CUDA device" in err


def test_check_needs_estimate_and_gpu_names_are_checked(tiny_sample, capsys):
    assert main(["probe", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--check"]) == 2
    assert "--check goes with --estimate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main(["probe", str(tiny_sample), "--arch", "resnet10t", "--size", "32", "--estimate", "--gpu", "k80"])
    assert error.value.code == 2 and "known: t4" in capsys.readouterr().err


def test_auto_accum_is_estimated_off_cuda(tiny_sample):
    config = TrainConfig(arch="resnet10t", size=32, item_size=(48, 48), bs=16, accum="auto", device="cpu",
                         pretrained=False, finetune=False, epochs=1)
    assert choose_accum(tiny_sample, config, budget_gb=16, max_accum=2) == 1
    with pytest.raises(ConfigError, match=r"\(estimated, no GPU\) even at accum 2"):
        choose_accum(tiny_sample, config, budget_gb=0.5, max_accum=2)
