"""GPU-hour estimates of a plan's kernels, from FLOPs counted on the meta device."""

import pytest

from paddy.core.config import TrainConfig
from paddy.core.plan import load_plan
from paddy.kaggle.kernels import read_kernel_folder, render_kernels
from paddy.kaggle.quota import forward_flops, kernel_estimates, member_hours, needs_confirmation, script_members


def test_forward_flops_are_twice_timms_macs():
    # resnet50 at 224: 4.1 GMACs (timm's model card) = 8.2 GFLOPs, the figure the T4 rate is calibrated on.
    assert forward_flops("resnet50", (224, 224)) == pytest.approx(8.2e9, rel=0.02)


def test_member_hours_grow_with_epochs_folds_and_tta():
    base = TrainConfig(arch="resnet10t", size=64, epochs=4, tta="none", finetune=False)
    hours = member_hours(base)
    assert member_hours(base.replace(epochs=8)) > 1.8 * hours
    assert member_hours(base, folds=5) == pytest.approx(5 * hours)
    assert member_hours(base.replace(tta="4,0.25")) > hours


def test_lanes_kernels_last_as_long_as_their_longest_member(tmp_path):
    plan = load_plan("road-to-the-top")
    folders, _ = render_kernels(plan, "someone", out=tmp_path)
    estimates = kernel_estimates(folders, read_kernel_folder)
    kinds = [e.kind for e in estimates]
    assert kinds == ["probe", "lanes", "lanes", "lanes", "lanes"]  # the ensemble kernel has no GPU
    for estimate in estimates[1:]:
        assert len(estimate.runs) == 2 and estimate.hours == pytest.approx(max(h for _, h in estimate.runs) + 0.1)
    kind, configs = script_members(folders[1])
    assert kind == "lanes" and configs == list(plan.members[:2])
    total = sum(e.hours for e in estimates)
    assert 2 < total < 30  # eight large members, 13 epochs each, two at a time: hours, not minutes or weeks


def test_more_than_half_the_quota_needs_confirmation():
    assert needs_confirmation(10.1, 20.0) and not needs_confirmation(10.0, 20.0)
