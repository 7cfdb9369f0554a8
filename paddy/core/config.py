"""The training config: one small frozen dataclass that checks itself, shared by train, probe, plans and kernels."""

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass

from paddy.core.errors import ConfigError

ITEM_METHODS = ("squish", "crop", "pad")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
TARGETS = ("label", "variety")  # columns of train.csv a model can predict
SPLITS = ("hash", "random")  # hash: by a seeded hash of each id; random: fastai's RandomSplitter(valid_pct, seed)

# Sane ranges of the numbers a user can set: far past any real run, short of values that overflow, exhaust memory
# or run for ever. Checked here (configs, plans) and by the CLI's types, whose --help quotes them.
LIMITS = {
    "epochs": (1, 1000),
    "bs": (1, 4096),
    "lr": (1e-8, 10.0),
    "seed": (0, 2**32 - 1),  # numpy's seed range
    "side": (1, 8192),  # pixels, each side of an image or a training size
    "num_workers": (0, 64),
    "tta_n": (1, 64),
    "n_images": (1, 100_000),  # paddy sample: the real competition has 10,407 + 3,469
    "workers": (1, 256),  # processes of paddy resize
    "budget_gb": (0.1, 1024.0),
    "max_accum": (1, 1024),
    "folds": (0, 100),  # K of K-fold (at least 2, checked by TrainConfig) and a fold index I < K
    "devices": (1, 64),  # data-parallel processes of one run
}


def limits_text(name: str) -> str:
    """The range of a LIMITS entry as --help shows it, e.g. "1 to 1000"."""
    low, high = LIMITS[name]
    return f"{low:g} to {high:g}" if isinstance(low, float) or isinstance(high, float) else f"{low} to {high}"


def check_range(name: str, value: object, what: str | None = None) -> object:
    """`value` when it lies in LIMITS[name]; ConfigError naming `what` (default: name) and the range otherwise."""
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ConfigError(f"{what or name} must be in {limits_text(name)}, got {value!r}")
    return value


def parse_size(value, what="size"):
    """Turn 224, "224", "320,224" or [320, 224] into a (height, width) tuple of positive ints."""
    if isinstance(value, str):
        if "x" in value.lower():
            # `paddy sample --size` is WIDTHxHEIGHT like image tools; training sizes are HEIGHT,WIDTH like fastai.
            raise ConfigError(f"{what} is HEIGHT,WIDTH (e.g. 320,224) or one int, got {value!r}")
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    return positive_pair(parts, f"{what} must be positive: one int or 'HEIGHT,WIDTH', got {value!r}")


def positive_pair(parts, message):
    """Two positive ints from one or two parts (one means square); ConfigError(message) otherwise."""
    try:
        sizes = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if len(sizes) == 1:
        sizes = sizes * 2
    low, high = LIMITS["side"]
    if len(sizes) != 2 or min(sizes) < low:
        raise ConfigError(message)
    if max(sizes) > high:
        raise ConfigError(f"image sizes are at most {high} px a side, got {'x'.join(map(str, sizes))}")
    return sizes


def parse_tta(value):
    """Turn "4,0.25" (fastai tta: n passes, beta), "flip" or "none" into (mode, n, beta)."""
    text = str(value).strip().lower()
    if text in ("flip", "none"):
        return text, 0, 0.0
    try:
        n_text, beta_text = text.split(",")
        n, beta = int(n_text), float(beta_text)
    except ValueError:
        raise ConfigError(f"tta must be 'N,BETA' (e.g. 4,0.25), 'flip' or 'none', got {value!r}") from None
    if not LIMITS["tta_n"][0] <= n <= LIMITS["tta_n"][1] or not 0.0 <= beta <= 1.0:
        raise ConfigError(f"tta needs N in {limits_text('tta_n')} and 0 <= BETA <= 1, got {value!r}")
    return "fastai", n, beta


def is_power_of_two(n: object) -> bool:
    """True for an int 1, 2, 4, 8, ... (bools are not ints here)."""
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n & (n - 1) == 0


def check_power_of_two(value: object, what: str) -> int:
    """`value` when it is a power of two; ConfigError naming `what` otherwise."""
    if not is_power_of_two(value):
        raise ConfigError(f"{what} must be a power of two (1, 2, 4, ...), got {value!r}")
    return value


def check_device(device: object) -> str:
    """`device` when it names a device the kit knows (auto, cpu, mps, cuda, cuda:N); ConfigError otherwise."""
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return str(device)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; a run folder stores it resolved."""

    arch: str
    size: tuple = (224, 224)  # (height, width) of the batch augmentation output
    item_size: tuple | None = None  # (height, width) of the per-item resize; None: from the data (see data.source)
    item_method: str = "squish"
    min_scale: float = 0.75
    epochs: int = 12
    lr: float = 0.01
    bs: int = 64
    accum: object = 1  # an int power of two, or "auto" (the probe picks it)
    finetune: object = None  # None: fine_tune when pretrained, else one unfrozen cycle (see `fine_tunes`)
    pretrained: bool = True
    seed: int = 42
    split_seed: object = 42  # None: derive the validation split from `seed` (different split per member)
    valid_pct: float = 0.2
    split: str = "hash"  # "hash" keeps every run made before `split` existed on its validation set
    targets: tuple = ("label",)
    target_weights: tuple = ()
    tta: str = "4,0.25"
    name: str = ""
    folds: object = None  # None: one seeded valid_pct split; K >= 2: K-fold cross-validation (paddy/data/folds.py)
    num_workers: object = None  # None: fastai's default
    device: str = "auto"
    # Seconds between checkpoints (model + optimizer, for a resume): 0 saves every epoch. A run shorter than this
    # writes none and a kill costs at most this much training, so short runs pay nothing and long ones stay safe.
    checkpoint_every: float = 600.0

    def __post_init__(self):
        # Frozen, so normalise through object.__setattr__ once, here, and nowhere else.
        set_ = object.__setattr__
        if not isinstance(self.arch, str) or not self.arch.strip():
            raise ConfigError("arch must be a timm model name, e.g. convnext_small.fb_in22k")
        set_(self, "size", parse_size(self.size, "size"))
        if self.item_size is not None:  # None: the run takes it from its data (paddy.data.source.data_item_size)
            set_(self, "item_size", parse_size(self.item_size, "item_size"))
        set_(self, "targets", _parse_targets(self.targets))
        set_(self, "target_weights", parse_weights(self.target_weights, len(self.targets)))
        # A plan file can hold any TOML type: refuse the wrong ones here, not as a traceback mid-run.
        _check_whole(epochs=self.epochs, bs=self.bs, seed=self.seed)
        if self.split_seed is not None:
            _check_whole(split_seed=self.split_seed)
        for key in ("finetune", "pretrained"):
            value = getattr(self, key)
            if not isinstance(value, bool) and not (key == "finetune" and value is None):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
        _check_positive(epochs=self.epochs, lr=self.lr, bs=self.bs)  # before accum, which is compared with bs
        for key in ("epochs", "bs", "lr", "seed"):
            check_range(key, getattr(self, key))
        if self.split_seed is not None:
            check_range("seed", self.split_seed, "split_seed")
        set_(self, "accum", _parse_accum(self.accum, self.bs))
        parse_tta(self.tta)
        if self.item_method not in ITEM_METHODS:
            raise ConfigError(f"item_method must be one of {', '.join(ITEM_METHODS)}, got {self.item_method!r}")
        if isinstance(self.valid_pct, bool) or not isinstance(self.valid_pct, (int, float)) \
                or not 0.0 < self.valid_pct < 1.0:
            raise ConfigError(f"valid_pct must be between 0 and 1, got {self.valid_pct!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ConfigError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.folds is not None:
            _check_whole(folds=self.folds)
            if self.folds < 2:
                raise ConfigError(f"folds must be at least 2, got {self.folds}; leave folds out to train one split")
            check_range("folds", self.folds)
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ConfigError(f"num_workers must be 0 or more (0: load in the main process), got {self.num_workers!r}")
        if self.num_workers is not None:
            check_range("num_workers", self.num_workers)
        check_device(self.device)
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, (int, float)) \
                or not 0 <= self.checkpoint_every < math.inf:
            raise ConfigError(f"checkpoint_every must be seconds >= 0 (0: every epoch), got {self.checkpoint_every!r}")

    @property
    def micro_bs(self):
        """The batch size one forward pass sees: bs // accum."""
        return self.bs // (self.accum if isinstance(self.accum, int) else 1)

    @property
    def run_name(self):
        """A folder-safe name: the member's own name, else arch, item transform, size and any extra targets."""
        if self.name:
            return _slug(self.name)
        item = f"{self.item_method}" + (f"{self.item_size[0]}x{self.item_size[1]}" if self.item_size else "auto")
        extra_targets = "".join(f"-{t}" for t in self.targets[1:])  # a multi-target twin gets its own folder
        return _slug(f"{self.arch}-{item}-{self.size[0]}x{self.size[1]}{extra_targets}")

    @property
    def fine_tunes(self):
        """Whether the run starts with fastai's frozen epoch: finetune, else only when the body is pretrained.

        A frozen epoch of a randomly initialised body trains the head on random features: wasted time."""
        return self.pretrained if self.finetune is None else self.finetune

    @property
    def valid_seed(self):
        """The seed of the validation split: split_seed, or the run's seed when the split should vary."""
        return self.seed if self.split_seed is None else self.split_seed

    def replace(self, **changes):
        """A checked copy with some fields changed; the original is never mutated."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain JSON-ready dict of the fields (tuples become lists)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data, where="config"):
        """Build from a dict, refusing unknown keys and a missing arch."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "arch" not in data:
            raise ConfigError(f"{where}: missing required key 'arch'")
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigError(f"{where}: {error}") from None


def _parse_targets(targets):
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    targets = tuple(targets)
    bad = [t for t in targets if t not in TARGETS]
    if not targets or bad:
        raise ConfigError(f"unknown target(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TARGETS)}")
    if len(set(targets)) != len(targets) or targets[0] != "label":
        raise ConfigError(f"targets must start with 'label' and not repeat, got {','.join(targets)}")
    return targets


def parse_weights(weights, count, what="target weight", per="target"):
    """Turn None or "" (equal), "2,1" or a sequence into `count` finite weights >= 0, not all zero."""
    items = [w for w in weights.split(",") if w.strip()] if isinstance(weights, str) else list(weights or ())
    if not items:
        return (1.0,) * count
    try:
        values = tuple(float(w) for w in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}s must be numbers like 2,1, got {weights!r}") from None
    if len(values) != count:
        raise ConfigError(f"got {len(values)} {what}(s) for {count} {per}(s); give one per {per}, in order")
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) == 0:
        raise ConfigError(f"{what}s must be >= 0, finite and not all zero, got {weights!r}")
    return values


def _parse_accum(accum, bs):
    if accum == "auto":
        return accum
    try:
        accum = int(accum)
    except (TypeError, ValueError):
        raise ConfigError(f"accum must be a power of two or 'auto', got {accum!r}") from None
    if not is_power_of_two(accum) or accum > bs:
        raise ConfigError(f"accum must be a power of two no larger than bs={bs}, got {accum}")
    return accum


def _check_whole(**values):
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a whole number, got {value!r}")


def _check_positive(**values):
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be positive, got {value!r}")


def _slug(text):
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")
