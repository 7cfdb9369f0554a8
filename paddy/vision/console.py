"""What training prints: fastai's epoch table, and its progress bars only where a terminal shows them.

fastprogress prints a bar character and a carriage return each time it builds a bar, even with its `NO_BAR`
setting on (`ConsoleProgressBar.__init__`), so a log redirected to a file or a Kaggle kernel's log fills with them.
Where bars are off, the learner trains without fastai's ProgressCallback and `EpochTable` prints the same table.
"""

import contextlib
import sys
from collections.abc import Callable, Iterator

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.imports import noop  # fastai.learner.no_logging sets this one, not fastcore's
from fastai.learner import Learner
from fastprogress import fastprogress

MIN_WIDTH = 8  # fastai's table pads every column name to at least this


def bars_shown() -> bool:
    """Whether bars belong here: not turned off (runtime.progress_bars), and a notebook or a terminal; fastprogress's
    own test takes any stdout for a terminal (it checks that `isatty` exists, not what it says), so a lane's log or
    a library call with stdout in a file would fill with bars."""
    interactive = fastprogress.IN_NOTEBOOK or (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
    return bool(fastprogress.printing()) and bool(interactive)


class EpochTable(Callback):
    """fastai's epoch table (names, then one row per epoch), printed line by line and flushed, without bars."""

    order = ProgressCallback.order

    def __init__(self, write: Callable[[str], None] | None = None):
        self.write = write or (lambda line: print(line, flush=True))  # flushed: a log shows each epoch as it ends

    def before_fit(self):
        self.names, self.old_logger = None, None
        if self.learn.logger is noop:  # no_logging (predictions, the probe): nothing to print
            return
        self.old_logger, self.learn.logger = self.learn.logger, self.log_row
        self.log_row(self.recorder.metric_names)

    def after_fit(self):
        if self.old_logger is not None:
            self.learn.logger = self.old_logger

    def log_row(self, values):
        """Print the header on the first call, a row of values on the next ones, in fastai's layout."""
        cells = [f"{v:.6f}" if isinstance(v, float) else str(v) for v in values]
        if self.names is None:
            self.names = [c.ljust(MIN_WIDTH) for c in cells]
            self.write("  ".join(self.names))
            return
        self.write("".join(c.ljust(len(n) + 2) for c, n in zip(cells, self.names)).rstrip())


@contextlib.contextmanager
def console_output(learn: Learner) -> Iterator[Learner]:
    """Within the block, `learn` shows fastai's bars where they are drawn, else prints the plain `EpochTable`."""
    progress = getattr(learn, "progress", None)
    if bars_shown() or progress is None:
        yield learn
        return
    learn.remove_cb(progress)
    table = EpochTable()
    learn.add_cb(table)
    try:
        yield learn
    finally:
        learn.remove_cb(table)
        learn.add_cb(progress)  # an exported learner keeps fastai's own callbacks
