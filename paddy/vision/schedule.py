"""The training schedule: fastai's fine_tune split into its two cycles (so a run can resume mid-way), and the fit."""

from collections.abc import Callable
from dataclasses import dataclass

from fastai.learner import Learner

from paddy.core.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    """One fit_one_cycle call of a run's schedule."""

    name: str
    epochs: int
    frozen: bool
    kwargs: dict


def schedule(config: TrainConfig) -> tuple:
    """The run's phases: fastai's fine_tune split in its two cycles (so a run can resume), or one unfrozen cycle."""
    if not config.fine_tunes:
        return (Phase("train", config.epochs, False, {"lr_max": config.lr}),)
    base = config.lr / 2  # fine_tune halves the lr after the frozen epoch; lr_mult=100, pct_start=0.3, div=5
    return (Phase("frozen", 1, True, {"lr_max": slice(config.lr), "pct_start": 0.99}),
            Phase("unfrozen", config.epochs, False, {"lr_max": slice(base / 100, base), "pct_start": 0.3, "div": 5.0}))


def fit(learn: Learner, config: TrainConfig, cbs: tuple = (), start: tuple = (0, 0),
        phase_cbs: Callable | None = None) -> Learner:
    """Train per `schedule(config)`, from phase/epoch `start`; `phase_cbs(i, phase, start_epoch)` adds callbacks."""
    for index, phase in enumerate(schedule(config)):
        if index < start[0]:
            continue
        first = start[1] if index == start[0] else 0
        if first >= phase.epochs:
            continue
        if first == 0:
            learn.freeze_to(-1 if phase.frozen else 0)
            # GradientAccumulation restarts its count each fit but leaves the last fit's unstepped gradients in .grad:
            # they joined this phase's first step (and a run resumed at this phase lacked them).
            learn.model.zero_grad(set_to_none=True)
        else:
            # Learner.freeze_to also clears the optimizer state: right when a phase starts, wrong mid-phase, where
            # it would drop the state resume_point just loaded. The optimizer's own freeze_to keeps it.
            if learn.opt is None:
                learn.create_opt()
            learn.opt.freeze_to(-1 if phase.frozen else 0)
        extra = list(cbs) + (list(phase_cbs(index, phase, first)) if phase_cbs else [])
        learn.fit_one_cycle(phase.epochs, cbs=extra, start_epoch=first, **phase.kwargs)
    return learn
