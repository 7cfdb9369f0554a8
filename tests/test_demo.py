"""`paddy demo`: its plan, its summary, and (slow) the whole main job end to end with a checked submission."""

import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core.plan import parse_plan, plan_to_toml
from paddy.demo import DemoResult, demo_plan
from paddy.ensemble.log import read_log
from paddy.ensemble.submission import check_submission_file


def test_demo_plan_has_a_single_and_a_multi_target_member_with_accumulation():
    plan = demo_plan()
    assert [m.targets for m in plan.members] == [("label",), ("label", "variety")]
    assert {m.accum for m in plan.members} == {2} and all(m.micro_bs * 2 == m.bs for m in plan.members)
    assert {m.folds for m in plan.members} == {3}  # 2 members x 3 folds, sharing runs/folds.csv
    assert len({m.arch for m in plan.members}) == 2 and {m.split_seed for m in plan.members} == {42}
    assert not any(m.pretrained for m in plan.members)  # never downloads weights
    import tomllib

    assert parse_plan(tomllib.loads(plan_to_toml(plan))).members == plan.members  # what plan.toml holds


def test_summary_lists_every_step_with_its_output():
    result = DemoResult(workdir="w")
    result.add("sample", 1.25, "10 images", "w/data")
    result.add("ensemble", 0.5, "line one\nline two")
    text = result.summary()
    assert "== sample (1.2 s) -> w/data" in text and "   line two" in text and text.endswith("total 1.8 s")


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--workdir", "out"]) == 0
    summary = capsys.readouterr().out
    for step in ("sample", "check", "resize", "probe", "train", "ensemble", "submission check"):
        assert f"== {step} (" in summary
    assert "accum 2 (micro-batch 8)" in summary and "variety" in summary
    for words in ("fold-2:", "out-of-fold error on all 240 training images", "EQUAL WEIGHTS",
                  "FITTED caruana/logloss (nested)", "over the best member", "variety head, OOF accuracy"):
        assert words in summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # everything under the work folder
    work = tmp_path / "out"
    csv = work / "submissions" / "demo.csv"
    frame = check_submission_file(csv, data=work / "data64")
    assert len(frame) == len(pd.read_csv(work / "data" / "sample_submission.csv"))
    log = read_log(work / "submissions" / "log.csv")
    assert len(log) == 1 and log.loc[0, "message"] == "paddy demo" and log.loc[0, "n_valid"] == "240"
    assert log.loc[0, "fit"] == "caruana/logloss" and 0 < log.loc[0, "cv_accuracy"] <= 1
    for run in ("resnet10t-disease", "convnext_atto-disease-variety"):
        member = work / "runs" / run
        assert (member / "result.json").is_file() and (member / "oof_probs_label.csv").is_file()
        assert all((member / f"fold-{i}" / "result.json").is_file() for i in range(3))
    assert (work / "runs" / "folds.csv").is_file()
    assert (work / "runs" / "convnext_atto-disease-variety" / "test_probs_variety.csv").is_file()
    assert (work / "probe" / "probe.csv").is_file() and (work / "plan.toml").is_file()
