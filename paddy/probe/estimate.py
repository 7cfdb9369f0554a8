"""The memory probe without a GPU: the peak GPU memory of the kit's fp16 training step, estimated from a trace.

For a config and an accum: the kit's learner (same head, loss, fastai Adam and its state, micro-batch bs // accum)
is traced on fake tensors (`paddy.probe.trace`), the trace is replayed through a model of the CUDA caching allocator
(`paddy.probe.allocator`), and the calibration fitted on measured rows (`paddy.probe.calibrate`) adds what a trace
cannot see. What is estimated is training in its steady state, the way a real run spends most of its steps:
gradients and optimizer state allocated while a micro-batch runs forward and backward.
"""

import math
import time
from dataclasses import dataclass

from paddy.probe import allocator
from paddy.probe.calibrate import load_calibration
from paddy.probe.trace import StepTracer

MB = 2**20
STEADY = "steady"  # schedule of a real run: gradients and optimizer state exist before each micro-batch


@dataclass(frozen=True)
class TracedPeaks:
    """Peaks of one traced schedule in MiB: live storages, and the caching allocator's allocated and reserved."""

    storage_mb: float
    allocated_mb: float
    reserved_mb: float


@dataclass(frozen=True)
class Estimate:
    """One config at one accum: traced peaks and the calibrated estimate (MiB), or the error that stopped it."""

    arch: str
    size: str
    accum: int
    micro_bs: int
    traced: TracedPeaks | None = None
    estimated_alloc_mb: float = math.nan
    estimated_total_mb: float = math.nan
    calibrated_on: str = ""
    error: str = ""
    seconds: float = 0.0  # tracing and replaying this try


def schedule_actions(micro_batches, accum):
    """The actions of an epoch of `micro_batches` micro-batches with a step every `accum`, dropping any micro-batch
    that starts from a state already traced (its peak would repeat): e.g. (5, 1) -> batch, step, batch."""
    actions, seen, has_grads, has_state, count = [], set(), False, False, 0
    for _ in range(micro_batches):
        if (has_grads, has_state) not in seen:
            seen.add((has_grads, has_state))
            actions.append("batch")
        has_grads, count = True, count + 1
        if count == accum:
            count = 0
            if not has_state:
                actions.append("step")
                has_state = True
    return actions


def item_batch_bytes(micro_bs, item_size):
    """fastai's DataLoader keeps the device batch it transforms (uint8 at the item size) alive through the step."""
    return micro_bs * 3 * item_size[0] * item_size[1]


def _with_item_batch(events, micro_bs, item_size, tag):
    key = ("item batch", tag)  # a key no storage address can take
    return [(key, item_batch_bytes(micro_bs, item_size)), *events, (key, None)]


def peaks_of(events):
    """TracedPeaks of an event sequence (bytes in, MiB out)."""
    live, current, peak = {}, 0, 0
    for key, nbytes in events:
        if nbytes is None:
            current -= live.pop(key, 0)
        else:
            live[key] = nbytes
            current += nbytes
            peak = max(peak, current)
    replayed = allocator.replay(events)
    return TracedPeaks(storage_mb=peak / MB, allocated_mb=replayed.allocated / MB, reserved_mb=replayed.reserved / MB)


class SteadyTrace:
    """One learner traced in its steady state: gradients primed and one optimizer step taken, then one micro-batch
    per micro-batch size asked for (traced once), replayed after the same static allocations."""

    def __init__(self, config, vocabs):
        self.config = config
        self.tracer = StepTracer(config, vocabs)
        self.tracer.prime_gradients()
        self.tracer.step()
        self.static = list(self.tracer.counter.events)
        self.batches = {}  # micro-batch size -> its events

    def learn_parameters(self):
        """The traced learner's parameters."""
        return list(self.tracer.learn.model.parameters())

    def peaks(self, accum, item_size=None):
        """TracedPeaks of a steady micro-batch of bs // accum, with the DataLoader's batch at `item_size` (default:
        the config's) alive through it: members that differ only in item size share one trace."""
        micro_bs = self.config.bs // accum
        if micro_bs not in self.batches:
            self.batches[micro_bs] = self.tracer.batch(micro_bs)
        item_size = item_size or self.config.item_size
        return peaks_of(self.static + _with_item_batch(self.batches[micro_bs], micro_bs, item_size, accum))


def trace_schedule(config, vocabs, micro_batches):
    """TracedPeaks of the epoch a probe measured: `micro_batches` micro-batches of config.micro_bs from a fresh
    learner, a step every config.accum (see schedule_actions)."""
    tracer = StepTracer(config, vocabs)
    events = list(tracer.counter.events)
    for index, action in enumerate(schedule_actions(micro_batches, config.accum)):
        if action == "batch":
            events += _with_item_batch(tracer.batch(config.micro_bs), config.micro_bs, config.item_size, index)
        else:
            events += tracer.step()
    return peaks_of(events)


def estimate_accums(config, vocabs, accums, calibration=None, budget_gb=None, steady=None):
    """[Estimate] for `config` at each accum in turn (steady state, calibrated), stopping after the first whose
    estimated total fits `budget_gb` when one is given; one error Estimate when the tracer cannot handle the arch
    (a traceback is never what a user needs here). `steady`: a SteadyTrace of the same arch, size, bs and targets
    to reuse."""
    calibration = calibration or load_calibration()
    size, out = f"{config.size[0]}x{config.size[1]}", []
    try:
        steady = steady or SteadyTrace(config, vocabs)
        for accum in accums:
            start = time.perf_counter()
            traced = steady.peaks(accum, config.item_size)
            out.append(Estimate(config.arch, size, accum, config.bs // accum, traced=traced,
                                estimated_alloc_mb=calibration.allocated_mb(traced.allocated_mb),
                                estimated_total_mb=calibration.total_mb(traced.allocated_mb),
                                calibrated_on=calibration.gpu, seconds=round(time.perf_counter() - start, 2)))
            if budget_gb is not None and out[-1].estimated_total_mb <= budget_gb * 1024:
                break
    except Exception as error:  # noqa: BLE001 - an arch the tracer cannot follow is that member's one line
        accum = accums[min(len(out), len(accums) - 1)]
        out.append(Estimate(config.arch, size, accum, config.bs // accum,
                            error=f"cannot trace {config.arch}: {type(error).__name__}: {_first_line(error)}"))
    return out


def estimate_configs(configs, vocabs, accums_for, calibration=None, budget_gb=None, on_done=None):
    """{config: [Estimate]} for every config, tracing once per (arch, size, bs, targets); `accums_for(config)` gives
    the accums to try; `on_done(config, estimates, seconds)` is called after each."""
    calibration = calibration or load_calibration()
    traces, out = {}, {}
    for config in configs:
        start = time.perf_counter()
        key = (config.arch, config.size, config.bs, config.targets)
        if key not in traces:
            try:
                traces[key] = SteadyTrace(config, vocabs)
            except Exception:  # noqa: BLE001 - estimate_accums below reports it in one line
                traces[key] = None
        out[config] = estimate_accums(config, vocabs, accums_for(config), calibration, budget_gb, traces[key])
        if on_done:
            on_done(config, out[config], time.perf_counter() - start)
    return out


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else "no message"
