"""The memory estimate on tiny timm models (random init, fake tensors): positive, monotone in the micro-batch."""

import pytest

from paddy.core.accelerators import gpu
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.probe import estimate
from paddy.probe.calibrate import Calibration

VOCABS = {"label": tuple(f"class{i}" for i in range(10)), "variety": tuple(f"v{i}" for i in range(4))}
UNIT = Calibration(total_intercept_mb=500.0, total_slope=1.0, alloc_ratio=1.0, gpu="test", rows=2)


def tiny(arch="resnet10t", **changes):
    base = dict(arch=arch, size=32, item_size=(48, 48), bs=16, pretrained=False, finetune=False, epochs=1)
    return TrainConfig(**{**base, **changes})


def test_schedule_actions_trace_each_starting_state_once():
    assert estimate.schedule_actions(1, 1) == ["batch", "step"]
    assert estimate.schedule_actions(5, 1) == ["batch", "step", "batch"]
    assert estimate.schedule_actions(2, 2) == ["batch", "batch", "step"]
    assert estimate.schedule_actions(20, 4) == ["batch", "batch", "step", "batch"]


def test_gpu_budgets_by_name():
    assert gpu("T4").usable_gb == 15.0 and gpu("h200").usable_gb > 100 and gpu("a100-40").usable_gb == 40.0
    with pytest.raises(ConfigError, match="known: t4"):
        gpu("k80")


@pytest.mark.parametrize("arch", ["resnet10t", "convnext_atto"])
def test_steady_peaks_are_positive_and_grow_with_the_micro_batch(arch):
    steady = estimate.SteadyTrace(tiny(arch), VOCABS)
    static = steady.tracer.counter.current  # parameters, buffers, gradients and Adam's two moments
    params = sum(p.numel() for p in steady.learn_parameters()) * 4
    assert static >= 4 * params  # float32 weights, gradients, two moments
    peaks = [steady.peaks(accum) for accum in (4, 2, 1)]  # micro-batches of 4, 8, 16
    assert steady.tracer.counter.current == static  # a micro-batch leaves nothing behind
    allocated = [p.allocated_mb for p in peaks]
    assert 0 < static / 2**20 < allocated[0] < allocated[1] < allocated[2]
    assert all(p.storage_mb <= p.allocated_mb <= p.reserved_mb for p in peaks)


def test_the_first_step_peaks_lower_than_the_steady_state():
    config = tiny(accum=1)
    fresh = estimate.trace_schedule(config, VOCABS, micro_batches=1)  # one micro-batch, no state before it
    steady = estimate.trace_schedule(config, VOCABS, micro_batches=3)  # batch, step, batch
    assert fresh.allocated_mb < steady.allocated_mb


def test_search_stops_at_the_first_accum_that_fits_and_multitarget_traces():
    config = tiny(targets=("label", "variety"))
    every = estimate.estimate_accums(config, VOCABS, [1, 2, 4], calibration=UNIT)
    assert [e.accum for e in every] == [1, 2, 4] and not any(e.error for e in every)
    assert every[0].estimated_total_mb == pytest.approx(500.0 + every[0].traced.allocated_mb)
    budget_gb = (every[0].estimated_total_mb + every[1].estimated_total_mb) / 2 / 1024
    chosen = estimate.estimate_accums(config, VOCABS, [1, 2, 4], calibration=UNIT, budget_gb=budget_gb)
    assert [e.accum for e in chosen] == [1, 2]


def test_a_member_that_cannot_be_traced_is_one_line_and_the_others_still_get_estimates():
    good, bad = tiny(), tiny("vit_tiny_patch16_224")  # a fixed 224 input: 32 px fails in its patch embedding
    out = estimate.estimate_configs([good, bad], VOCABS, lambda c: [1, 2], calibration=UNIT)
    assert [e.accum for e in out[good]] == [1, 2] and all(e.estimated_total_mb > 0 for e in out[good])
    [error] = out[bad]
    assert error.error.startswith("cannot trace vit_tiny_patch16_224: ") and "\n" not in error.error
