"""Training collaborative-filtering models fast: fastai's Learner and fit_one_cycle fed by tensor batches.

fastai's `collab_learner` goes through the TabularPandas pipeline, which costs several times more per batch than
the model itself on these small embedding models. Here a `TensorLoader` yields shuffled index batches over int64
tensors, and fastai's Learner, one-cycle schedule, Adam and progress bar do the rest, with the Learner's per-batch
overhead cut by `LeanLearner` and `FusedAdam` (paddy/collab/loop.py).

Weight decay, both ways (`wd_mode`):
- "decoupled" (fastai's default, `true_wd`): every step multiplies the weights by (1 - lr * wd).
- "l2" (the book's `loss + wd * (params ** 2).sum()`): done as fastai's Adam with `decouple_wd=False`, which adds
  `wd' * p` to the gradient; we pass wd' = 2 * wd so the gradient is exactly that of the book's loss.

Threads: a 50-factor embedding model does too little work per batch to gain from intra-op threads, and loses badly
when another process holds the second core. `fit_collab` sets `torch.set_num_threads(config.threads)` (1 by default)
for the fit and restores the previous count afterwards.
"""

import contextlib
import time
from dataclasses import dataclass
from functools import partial

import fastai.callback.progress  # noqa: F401 -- registers the progress bar and epoch table
import fastai.callback.schedule  # noqa: F401 -- adds Learner.fit_one_cycle
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.collab import TabularCollab, collab_learner
from fastai.data.block import TransformBlock
from fastai.data.core import DataLoaders
from fastai.learner import CastToTensor
from fastai.optimizer import Adam
from fastai.tabular.core import Categorify

from paddy.collab.blend import fit_blend
from paddy.collab.config import CollabConfig
from paddy.collab.fitted import CollabModel, FitResult
from paddy.collab.loop import FusedAdam, LeanLearner
from paddy.collab.models import build_model, fill_unknown
from paddy.core import runtime
from paddy.core.errors import ConfigError, DataError

AUTOREC_MIN_RATINGS = 2.0  # mean training ratings per item below which AutoRec's item columns are mostly empty

def default_y_range(low, high):
    """The book's (0, 5.5) for 1..5 stars, mapped linearly onto the data's [low, high] rating range."""
    if high <= low:
        return (low - 1.0, high + 1.0)
    unit = (high - low) / 4.0
    return (low - unit, low + 4.5 * unit)


def resolve_y_range(config, rating_range):
    """The y_range a fit uses (None for no squashing); ratings outside a given y_range are a ConfigError."""
    low, high = rating_range
    if config.y_range is None:
        return default_y_range(low, high)
    if len(config.y_range) == 0:
        return None
    y_low, y_high = config.y_range
    if not (y_low < low and high < y_high):
        raise ConfigError(f"ratings span [{low:g}, {high:g}] but y_range ({y_low:g}, {y_high:g}) does not contain "
                          "them strictly (a sigmoid never reaches its ends); widen --y-range")
    return (float(y_low), float(y_high))


class TensorLoader:
    """Batches of (x, y) sliced from whole tensors by shuffled index: no per-item Python work."""

    def __init__(self, x, y, bs=64, shuffle=False, seed=None, device="cpu"):
        self.x, self.y, self.bs, self.shuffle, self.seed = x.to(device), y.to(device), bs, shuffle, seed
        self.device = device
        self.generator = None
        if shuffle:
            self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def __len__(self):
        return (len(self.x) + self.bs - 1) // self.bs

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for start in range(0, n, self.bs):
            if order is None:
                yield self.x[start:start + self.bs], self.y[start:start + self.bs]
            else:
                idx = order[start:start + self.bs]
                yield self.x[idx], self.y[idx]

    def new(self, shuffle=False, **kwargs):
        """An unshuffled copy (fastai's get_preds asks for one)."""
        return type(self)(self.x, self.y, self.bs, shuffle, self.seed, self.device)

    def to(self, device):
        """Move the tensors to `device` (fastai's DataLoaders calls this)."""
        self.x, self.y, self.device = self.x.to(device), self.y.to(device), device
        return self


class ItemLoader(TensorLoader):
    """Batches of whole items (every training rating of each), items shuffled; about `bs` ratings a batch.

    AutoRec encodes each item of a batch from its whole column of ratings: with whole items per batch every item is
    encoded once an epoch, where random batches of ratings would encode most items again in every batch.
    """

    def __init__(self, x, y, bs=64, shuffle=False, seed=None, device="cpu"):
        super().__init__(x, y, bs, shuffle, seed, device)
        self.present = torch.unique(self.x[:, 1])
        # a fixed number of items per batch keeps len() exact, which fit_one_cycle's schedule counts on
        self.per_batch = max(1, round(bs * len(self.present) / max(len(self.x), 1)))

    def __len__(self):
        return -(-len(self.present) // self.per_batch) if self.shuffle else super().__len__()

    def __iter__(self):
        if not self.shuffle:
            yield from super().__iter__()
            return
        rank = torch.zeros(int(self.x[:, 1].max()) + 1, dtype=torch.int64)
        rank[self.present[torch.randperm(len(self.present), generator=self.generator)]] = torch.arange(
            len(self.present))
        batch = torch.div(rank[self.x[:, 1]], self.per_batch, rounding_mode="floor")
        order = torch.argsort(batch, stable=True)
        for idx in torch.split(order, torch.bincount(batch, minlength=len(self)).tolist()):
            yield self.x[idx], self.y[idx]


def build_vocab(values):
    """Sorted distinct ids; position i + 1 is the id's index (0 is "unknown")."""
    return sorted(set(values))


def encode(values, vocab):
    """Ids to int64 indices into `vocab` + 1; ids not in `vocab` become 0 (unknown)."""
    return pd.Categorical(values, categories=vocab).codes.astype(np.int64) + 1


def encode_frame(frame, users, items):
    """(x, y) tensors of a ratings frame: x is (n, 2) user and item indices, y the float ratings."""
    x = np.stack([encode(frame["user"], users), encode(frame["item"], items)], axis=1)
    return torch.from_numpy(x), torch.from_numpy(frame["rating"].to_numpy(dtype=np.float32, copy=True))


class EpochTimer(Callback):
    """A fastai callback recording wall and process-CPU seconds per epoch (train and validation).

    CPU seconds are the steadier figure when other jobs share the machine: waiting for a core costs wall time only.
    """

    order = 0
    events = ("before_fit", "before_epoch", "after_epoch")

    def __call__(self, event_name):
        # fastai's Learner offers every event of every batch to every callback, and Callback.__call__ looks up
        # `training` through the Learner each time; this timer needs three per-epoch events only, so it skips
        # that lookup (about 10% of a batch of fastai's own collab_learner, which the benchmark times).
        if event_name in self.events:
            getattr(self, event_name)()

    def before_fit(self):
        self.seconds, self.cpu_seconds = [], []

    def before_epoch(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def after_epoch(self):
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)


def epoch_timer():
    """A fresh EpochTimer."""
    return EpochTimer()


def optimizer(config):
    """fastai's Adam, or the same update as one fused torch kernel (`FusedAdam`); decay decoupled or L2.

    fastai's Adam runs about twenty tensor passes per parameter per step in Python; the fused kernel makes one,
    which on a 9,742 x 50 item table is most of an epoch (measured: 29 ms vs 2.3 ms a step under load).
    """
    decoupled = config.wd_mode == "decoupled"
    return partial(Adam if config.opt == "fastai" else FusedAdam, decouple_wd=decoupled)


def fastai_wd(config):
    """The wd fastai's optimizer gets: as given when decoupled, doubled for the book's L2-in-the-loss form."""
    return config.wd if config.wd_mode == "decoupled" else 2 * config.wd


def _history(learn, timer):
    """Per-epoch rows from fastai's Recorder and our timer."""
    rows = []
    for epoch, (values, seconds, cpu) in enumerate(zip(learn.recorder.values, timer.seconds, timer.cpu_seconds,
                                                       strict=False)):
        rows.append({"epoch": epoch, "train_loss": float(values[0]), "valid_loss": float(values[1]),
                     "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)})
    return rows


def _learner(model, train, valid, config):
    """A fastai Learner over tensor batches, with plain MSE loss."""
    loader = ItemLoader if config.kind == "autorec" else TensorLoader
    train_dl = loader(*train, bs=config.bs, shuffle=True, seed=config.seed, device=config.device)
    valid_dl = TensorLoader(*valid, bs=max(config.bs, 1024), device=config.device)
    learn = LeanLearner(DataLoaders(train_dl, valid_dl, device=config.device), model, loss_func=F.mse_loss,
                    opt_func=optimizer(config))
    # Our batches are plain tensors already; CastToTensor would only add a callback round per event per batch.
    return learn.remove_cb(CastToTensor)


@dataclass
class Prepared:
    """What a fit starts from: the encoded splits, the vocabularies and a freshly seeded model."""

    model: object
    train_xy: tuple
    valid_xy: tuple
    users: list
    items: list
    y_range: tuple | None


def check_autorec_input(x, n_items, min_mean=AUTOREC_MIN_RATINGS):
    """A DataError when items average under `min_mean` training ratings: AutoRec learns items from their columns."""
    counts = torch.bincount(x[:, 1], minlength=n_items)[1:]
    mean = float(counts.float().mean()) if len(counts) else 0.0
    if mean < min_mean:
        raise DataError(f"AutoRec learns each item from its column of ratings, and the training items have {mean:.2f} "
                        f"ratings each on average (fewer than {min_mean:g}); use --model bias or svdpp, or more data")


def prepare(train, valid, config):
    """Encode both frames on the training vocabularies and build the seeded model `config.kind`."""
    y_range = resolve_y_range(config, (float(train["rating"].min()), float(train["rating"].max())))
    users, items = build_vocab(train["user"]), build_vocab(train["item"])
    train_xy, valid_xy = encode_frame(train, users, items), encode_frame(valid, users, items)
    if config.kind == "autorec":
        check_autorec_input(train_xy[0], len(items) + 1)
    runtime.seed_everything(config.seed)
    model = build_model(config.kind, len(users) + 1, len(items) + 1, config.factors, y_range, config.layers,
                        history=(train_xy[0].numpy(), train_xy[1].numpy()))
    return Prepared(model, train_xy, valid_xy, users, items, y_range)


def fitted_model(model, kind, users, items, n_factors, y_range, layers, titles, seen, ratings=None, **shape):
    """The trained `model` as a CollabModel: unknown rows filled, its shape, titles in item order, seen pairs.

    `shape` adds entries a blend needs to be rebuilt (members, clip).
    """
    fill_unknown(model.cpu().eval())
    shape = {"n_users": len(users) + 1, "n_items": len(items) + 1, "n_factors": n_factors,
             "y_range": list(y_range) if y_range else None, "layers": list(layers), **shape}
    titles = titles or {}
    return CollabModel(model, kind, shape, users, items, [titles.get(item, item) for item in items], seen, ratings)


def fit_collab(train: pd.DataFrame, valid: pd.DataFrame, config: CollabConfig, titles: dict | None = None,
               progress: bool = True) -> FitResult:
    """Train `config.kind` on the `train` frame, validate on `valid`; returns a FitResult (unknown rows filled)."""
    if config.kind == "fastai":
        return fit_fastai(train, valid, config, titles, progress)
    if config.kind == "blend":
        return fit_blend(train, valid, config, fit_collab, titles, progress)
    start = prepare(train, valid, config)
    model, users, items, y_range = start.model, start.users, start.items, start.y_range
    learn, timer = _learner(model, start.train_xy, start.valid_xy, config), epoch_timer()
    with runtime.torch_threads(config.threads), _quiet(learn, progress):
        learn.fit_one_cycle(config.epochs, config.lr, wd=fastai_wd(config), cbs=[timer])
    check_finite(model, config)
    fitted = fitted_model(model, config.kind, users, items, config.factors, y_range, config.layers, titles,
                          start.train_xy[0].numpy(), start.train_xy[1].numpy())
    return FitResult(fitted, _history(learn, timer), config.threads)


def check_finite(model, config):
    """A ConfigError when training left a NaN or infinite weight (too high an lr or wd): nothing to explain or save."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ConfigError(f"training diverged: weights are NaN or infinite after lr {config.lr:g}, wd {config.wd:g}; "
                          "lower --lr or --wd")


@contextlib.contextmanager
def _quiet(learn, progress):
    """fastai's progress bar and epoch table when `progress`, nothing otherwise."""
    if progress:
        yield
    else:
        with learn.no_bar(), learn.no_logging():
            yield


def fit_fastai(train, valid, config, titles=None, progress=True):
    """fastai's own `collab_learner` on the same split (for parity), converted to the kit's DotProductBias."""
    y_range = resolve_y_range(config, (float(train["rating"].min()), float(train["rating"].max())))
    runtime.seed_everything(config.seed)
    frame = pd.concat([train, valid], ignore_index=True)
    splits = (list(range(len(train))), list(range(len(train), len(frame))))
    tab = TabularCollab(frame, [Categorify], ["user", "item"], y_names=["rating"], y_block=TransformBlock(),
                        splits=splits)
    dls = tab.dataloaders(bs=config.bs, device=config.device)
    learn, timer = collab_learner(dls, n_factors=config.factors, y_range=y_range), epoch_timer()
    with runtime.torch_threads(config.threads), _quiet(learn, progress):
        learn.fit_one_cycle(config.epochs, config.lr, wd=fastai_wd(config), cbs=[timer])
    check_finite(learn.model, config)
    fitted = from_fastai(learn.model.cpu(), dls.classes, train, y_range, titles)
    return FitResult(fitted, _history(learn, timer), config.threads)


def from_fastai(source, classes, train, y_range, titles=None):
    """fastai's EmbeddingDotBias as the kit's DotProductBias over the ids of `train` only, unknown rows filled.

    fastai's Categorify also gives ids seen only in validation a row, which training never moves (it only decays);
    here they are unknown (index 0, the mean row), so they count as cold and are never recommended.
    """
    users, items = build_vocab(train["user"]), build_vocab(train["item"])
    rows = {"user": [classes["user"].o2i[u] for u in users], "item": [classes["item"].o2i[i] for i in items]}
    n_factors = source.u_weight.weight.shape[1]
    model = build_model("bias", len(users) + 1, len(items) + 1, n_factors, y_range)
    for ours, theirs, side in (("user_factors", "u_weight", "user"), ("item_factors", "i_weight", "item"),
                               ("user_bias", "u_bias", "user"), ("item_bias", "i_bias", "item")):
        getattr(model, ours).weight.data[1:] = getattr(source, theirs).weight.data[rows[side]]
    x, y = encode_frame(train, users, items)
    return fitted_model(model, "bias", users, items, n_factors, y_range, (), titles, x.numpy(), y.numpy())
