"""Multi-target learning: one model, one output head per target (disease, variety), a weighted sum of cross-entropies.

The model has `sum(head_sizes)` outputs; head `i` is the slice of `head_sizes[i]` logits after the heads before it.
Head sizes always come from the vocabs. Everything here is pure tensor code, usable on hand-made tensors.
"""

import operator

import torch
import torch.nn.functional as F
from fastai.learner import Metric

from paddy.core.errors import ConfigError


def _plain(tensor):
    # fastai hands us TensorImage/TensorCategory subclasses; torch ops on mixed subclasses can refuse, so drop them.
    return tensor.as_subclass(torch.Tensor) if type(tensor) is not torch.Tensor else tensor


def check_head_sizes(head_sizes):
    """Head sizes as a tuple of ints >= 1, or a ConfigError."""
    sizes = tuple(head_sizes)
    try:
        ints = tuple(operator.index(s) for s in sizes if not isinstance(s, bool))  # numpy ints too, not floats
    except TypeError:
        ints = ()
    if not sizes or len(ints) != len(sizes) or min(ints) < 1:
        raise ConfigError(f"head sizes must be positive ints (one per target's vocab), got {list(sizes)}")
    return ints


def head_sizes_for(vocabs, targets):
    """The number of classes of each target, in `targets` order, from `{target: vocab}`."""
    missing = [t for t in targets if t not in vocabs]
    if missing:
        raise ConfigError(f"no vocab for target(s) {', '.join(missing)}; the data must provide one per target")
    return check_head_sizes(len(vocabs[t]) for t in targets)


def split_heads(tensor, head_sizes):
    """Split the last dimension of `tensor` (logits or probabilities) into one tensor per head."""
    head_sizes = check_head_sizes(head_sizes)
    if tensor.shape[-1] != sum(head_sizes):
        raise ValueError(f"last dimension {tensor.shape[-1]} does not match head sizes {list(head_sizes)}")
    return tuple(torch.split(tensor, list(head_sizes), dim=-1))


def head_cross_entropy(logits, target, head_sizes, head, reduction="mean"):
    """Cross-entropy of one head's logits against that head's class indices."""
    head_logits = split_heads(_plain(logits), head_sizes)[head].float()
    return F.cross_entropy(head_logits, _plain(target).long().view(-1), reduction=reduction)


def head_error_rate(logits, target, head_sizes, head):
    """Fraction of items whose argmax on one head is not the target class."""
    predicted = split_heads(_plain(logits), head_sizes)[head].argmax(dim=-1)
    return (predicted != _plain(target).view(-1)).float().mean()


class MultiTargetLoss:
    """Weighted sum of per-head cross-entropies; softmax per head as activation, argmax per head as decodes."""

    y_int = True  # targets are class indices (fastai reads this, e.g. for MixUp)

    def __init__(self, head_sizes, weights=None, reduction="mean"):
        self.head_sizes = check_head_sizes(head_sizes)
        weights = (1.0,) * len(self.head_sizes) if weights is None else tuple(float(w) for w in weights)
        if len(weights) != len(self.head_sizes):
            raise ConfigError(f"got {len(weights)} target weight(s) for {len(self.head_sizes)} head(s)")
        if min(weights) < 0 or sum(weights) == 0:
            raise ConfigError(f"target weights must be >= 0 and not all zero, got {list(weights)}")
        self.weights = weights
        self.reduction = reduction  # fastai sets it to "none" for per-item losses (get_preds with_loss)

    def __call__(self, logits, *targets):
        """Weighted sum of each head's cross-entropy against its target."""
        if len(targets) != len(self.head_sizes):
            raise ValueError(f"got {len(targets)} target tensor(s) for {len(self.head_sizes)} head(s)")
        losses = [w * head_cross_entropy(logits, t, self.head_sizes, i, reduction=self.reduction)
                  for i, (w, t) in enumerate(zip(self.weights, targets))]
        return torch.stack(losses).sum(dim=0)

    def activation(self, logits):
        """Per-head softmax, concatenated: every head's slice of a row sums to 1."""
        heads = split_heads(_plain(logits).float(), self.head_sizes)
        return torch.cat([F.softmax(h, dim=-1) for h in heads], dim=-1)

    def decodes(self, x):
        """Per-head argmax, as a tuple of class-index tensors (one per target)."""
        return tuple(h.argmax(dim=-1) for h in split_heads(_plain(x), self.head_sizes))

    def __repr__(self):
        return f"MultiTargetLoss(head_sizes={list(self.head_sizes)}, weights={list(self.weights)})"


class HeadMetric(Metric):
    """A per-head metric averaged over the validation set: 'error' (error rate) or 'loss' (cross-entropy)."""

    def __init__(self, kind, head, head_sizes, name):
        if kind not in ("error", "loss"):
            raise ValueError(f"kind must be 'error' or 'loss', got {kind!r}")
        self.kind, self.head, self.head_sizes, self._name = kind, head, check_head_sizes(head_sizes), name
        self.reset()

    def __call__(self, logits, *targets):
        """The metric on one batch of logits and the targets of all heads."""
        target = targets[self.head]
        if self.kind == "error":
            return head_error_rate(logits, target, self.head_sizes, self.head)
        return head_cross_entropy(logits, target, self.head_sizes, self.head)

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        # Weight each batch by its size so the last, smaller batch counts for what it holds.
        bs = len(learn.yb[self.head])
        self.total += float(self(learn.pred.detach(), *learn.yb)) * bs
        self.count += bs

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return self._name


def multitask_metrics(targets, head_sizes):
    """fastai metrics: each target's error rate, then each head's loss (named label_error, ..., variety_loss)."""
    head_sizes = check_head_sizes(head_sizes)
    if len(targets) != len(head_sizes):
        raise ConfigError(f"got {len(targets)} target(s) but {len(head_sizes)} head size(s)")
    errors = [HeadMetric("error", i, head_sizes, f"{t}_error") for i, t in enumerate(targets)]
    losses = [HeadMetric("loss", i, head_sizes, f"{t}_loss") for i, t in enumerate(targets)]
    return errors + losses
