"""What decides a collaborative-filtering fit: `CollabConfig`, and the two recipes its defaults come from.

- "fast" (the default): large batches with the learning rate and weight decay retuned for them. Chosen on
  ml-latest-small's seeded 80/20 split and checked on MovieLens 100k's (bench/collab.py prints both).
- "book": the fastai book's chapter 8 recipe, `fit_one_cycle(5, 5e-3, wd=0.1)` at batch size 64, to reproduce its
  numbers. The book has no AutoRec or SVD++, so those (and a blend of them) have the fast recipe only.

A field left as None takes its recipe's value for the model kind and weight-decay mode; `replace` derives such
fields anew, so a copy with another kind or wd_mode gets that one's defaults while values given stay as given.
"""

import math
from dataclasses import asdict, dataclass, field, replace

from paddy.collab.models import KINDS, MEMBER_KINDS
from paddy.core.errors import ConfigError

WD_MODES = ("decoupled", "l2")
OPTS = ("fused", "fastai")
RECIPES = ("fast", "book")
TUNED = ("factors", "epochs", "lr", "wd", "bs")  # the fields a recipe fills
# With wd_mode l2 both recipes use 1e-4: the book's sum over all weights, added to Adam's gradient, wants a far
# smaller wd than the decoupled decay (latest-small, 5 epochs, bias model, valid MSE with l2: wd 0.1 1.928, 1e-2 1.309,
# 1e-3 0.865, 1e-4 0.717, 1e-5 0.748; decoupled at 0.1: 0.714).
L2_WD = 1e-4
BOOK = {"factors": 50, "epochs": 5, "lr": 5e-3, "wd": 0.1, "bs": 64}
FAST = {
    "dot": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
    "bias": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
    "scratch": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
    "fastai": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
    "nn": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
    "autorec": {"factors": 500, "epochs": 40, "lr": 3e-3, "wd": 10.0, "bs": 2048},
    "svdpp": {"factors": 50, "epochs": 5, "lr": 1e-2, "wd": 0.5, "bs": 1024},
}
# Chosen on a seeded 10% validation part of u1.base (bench/collab.py tune; README): adding nn and dot to
# AutoRec + SVD++ + bias lowered its RMSE from 0.8903 to 0.8896; nn and dot cost about 3 s of CPU together.
DEFAULT_MEMBERS = ("autorec", "svdpp", "bias", "nn", "dot")
BOOK_KINDS = ("dot", "bias", "scratch", "nn", "fastai")  # the book's chapter 8 models


def recipe_defaults(kind, recipe="fast", wd_mode="decoupled"):
    """The values `recipe` gives `kind`'s tuned fields (none for a blend: its members use their own)."""
    if recipe not in RECIPES:
        raise ConfigError(f"recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    if kind == "blend":
        return {}
    if recipe == "book" and kind not in BOOK_KINDS:
        raise ConfigError(f"the book's recipe has no {kind} model (the book's are {', '.join(BOOK_KINDS)}); "
                          "use --recipe fast")
    values = dict(BOOK if recipe == "book" else FAST[kind])
    return values | ({"wd": L2_WD} if wd_mode == "l2" else {})



@dataclass(frozen=True)
class CollabConfig:
    """Everything that decides a collaborative-filtering fit; checks itself. None: the recipe's value."""

    kind: str = "bias"
    recipe: str = "fast"
    factors: int | None = None  # AutoRec: the hidden code's size
    epochs: int | None = None
    lr: float | None = None
    wd: float | None = None
    wd_mode: str = "decoupled"
    bs: int | None = None
    seed: int = 42
    y_range: tuple | None = None  # None: (0, 5.5) scaled to the data's rating range; () for no squashing
    layers: tuple = (100,)
    threads: int = 1
    valid_pct: float = 0.2
    split: str = "random"
    device: str = "cpu"
    opt: str = "fused"  # "fused": FusedAdam (torch's fused kernel as a fastai Optimizer); "fastai": fastai's Adam
    members: tuple = DEFAULT_MEMBERS  # a blend's member kinds
    blend_pct: float = 0.1  # share of the training ratings held out to fit a blend's weights
    extra: dict = field(default_factory=dict)
    # Which fields were left to their defaults: `replace` re-derives them (a new wd_mode gets its own wd).
    defaulted: frozenset = field(init=False, default=frozenset(), repr=False, compare=False)

    def __post_init__(self):
        for ok, message in ((self.kind in KINDS, f"model {self.kind!r} is not one of {', '.join(KINDS)}"),
                            (self.wd_mode in WD_MODES, f"wd_mode {self.wd_mode!r} is not one of {WD_MODES}")):
            if not ok:
                raise ConfigError(message)
        defaulted = frozenset(name for name in TUNED if getattr(self, name) is None)
        object.__setattr__(self, "defaulted", defaulted)
        given = sorted(set(TUNED) - defaulted)
        if self.kind == "blend" and given:
            raise ConfigError(f"a blend's members train with their own recipes; drop {', '.join(given)} "
                              "(train a member alone with --model KIND to change it)")
        for name, value in recipe_defaults(self.kind, self.recipe, self.wd_mode).items():
            if name in defaulted:
                object.__setattr__(self, name, value)
        self._check()

    def _check(self):
        """A ConfigError for the first value out of range."""
        tuned = self.kind != "blend"
        checks = [(not tuned or self.factors > 0, f"factors must be positive, got {self.factors}"),
                  (not tuned or self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
                  (not tuned or 0 < self.lr < math.inf, f"lr must be positive and finite, got {self.lr}"),
                  (not tuned or 0 <= self.wd < math.inf, f"wd must be >= 0 and finite, got {self.wd}"),
                  (not tuned or self.bs > 0, f"bs must be positive, got {self.bs}"),
                  (self.opt in OPTS, f"opt {self.opt!r} is not one of {OPTS}"),
                  (self.threads > 0, f"threads must be positive, got {self.threads}"),
                  (0 < self.valid_pct < 1, f"valid_pct must be between 0 and 1, got {self.valid_pct}"),
                  (0 < self.blend_pct < 1, f"blend_pct must be between 0 and 1, got {self.blend_pct}"),
                  (all(n > 0 for n in self.layers), f"layers must be positive sizes, got {self.layers}")]
        if self.kind == "blend":
            unknown = [m for m in self.members if m not in MEMBER_KINDS]
            checks += [(len(self.members) > 0, "a blend needs at least one member"),
                       (not unknown, f"blend member(s) {unknown} not among {', '.join(MEMBER_KINDS)}"),
                       (len(set(self.members)) == len(self.members), f"blend members repeat: {self.members}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.y_range and not (len(self.y_range) == 2 and -math.inf < self.y_range[0] < self.y_range[1] < math.inf):
            raise ConfigError(f"y_range must be LOW,HIGH with LOW < HIGH, got {self.y_range}")

    def replace(self, **changes):
        """A copy with `changes` (checked again); fields left to their defaults are derived anew."""
        return replace(self, **{**dict.fromkeys(self.defaulted), **changes})

    def member(self, kind):
        """The config a blend's member `kind` trains with: its own recipe, everything else as here."""
        return replace(self, kind=kind, **dict.fromkeys(TUNED))

    def to_dict(self):
        """Plain JSON-able dict of the resolved values."""
        values = asdict(self)
        values.pop("defaulted")
        return values
