"""Latent-factor models for ratings, as the fastai book builds them (chapter 8), with one shared layout.

Every model takes a batch `x` of shape (bs, 2) holding (user index, item index) and returns (bs,) ratings.
Index 0 on each side is reserved for "unknown" (as fastai's Categorify reserves `#na#`): training never sees it,
and `fill_unknown` sets it to the mean of the trained rows afterwards, so an unseen user or item is predicted from
the mean embedding and mean bias instead of raising KeyError.

Every model exposes `user_factors`, `item_factors` (an `nn.Embedding` or a raw parameter) and `user_bias`,
`item_bias` (or None); `table(model, name)` returns the weight tensor behind any of them.
"""

import torch
from fastai.layers import sigmoid_range
from fastai.tabular.model import emb_sz_rule
from torch import nn

KINDS = ("dot", "bias", "scratch", "nn", "fastai")
TABLES = ("user_factors", "item_factors", "user_bias", "item_bias")


def embedding(n_rows, n_cols):
    """An nn.Embedding initialised as fastai's (truncated normal, std 0.01): small factors train stably."""
    layer = nn.Embedding(n_rows, n_cols)
    with torch.no_grad():
        layer.weight.normal_().fmod_(2).mul_(0.01)
    return layer


def create_params(size):
    """A raw parameter tensor of `size`, normal with std 0.01 (the book's from-scratch embedding)."""
    return nn.Parameter(torch.zeros(*size).normal_(0, 0.01))


def squash(raw, y_range):
    """Raw scores into `y_range` with a sigmoid, or unchanged when `y_range` is None."""
    return raw if y_range is None else sigmoid_range(raw, *y_range)


class DotProduct(nn.Module):
    """Rating = user factors . item factors (squashed into y_range when given)."""

    def __init__(self, n_users, n_items, n_factors=50, y_range=None):
        super().__init__()
        self.user_factors, self.item_factors = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.user_bias = self.item_bias = None
        self.y_range = None if y_range is None else tuple(y_range)

    def raw(self, users, items):
        """The score before squashing."""
        return (self.user_factors(users) * self.item_factors(items)).sum(1)

    def forward(self, x):
        return squash(self.raw(x[:, 0], x[:, 1]), self.y_range)


class DotProductBias(DotProduct):
    """Rating = user . item + user bias + item bias, with `nn.Embedding` tables."""

    def __init__(self, n_users, n_items, n_factors=50, y_range=None):
        super().__init__(n_users, n_items, n_factors, y_range)
        self.user_bias, self.item_bias = embedding(n_users, 1), embedding(n_items, 1)

    def raw(self, users, items):
        dot = (self.user_factors(users) * self.item_factors(items)).sum(1)
        return dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]


class DotProductBiasScratch(nn.Module):
    """DotProductBias with raw parameters indexed directly: `create_params` instead of nn.Embedding."""

    def __init__(self, n_users, n_items, n_factors=50, y_range=None):
        super().__init__()
        self.user_factors, self.item_factors = create_params([n_users, n_factors]), create_params([n_items, n_factors])
        self.user_bias, self.item_bias = create_params([n_users]), create_params([n_items])
        self.y_range = None if y_range is None else tuple(y_range)

    def forward(self, x):
        users, items = x[:, 0], x[:, 1]
        raw = (self.user_factors[users] * self.item_factors[items]).sum(1)
        return squash(raw + self.user_bias[users] + self.item_bias[items], self.y_range)


def embedding_sizes(n_users, n_items):
    """fastai's rule of thumb for each side's factor count (different sizes per side)."""
    return int(emb_sz_rule(n_users)), int(emb_sz_rule(n_items))


class CollabNN(nn.Module):
    """Concatenated user and item embeddings (sizes by fastai's rule) through hidden ReLU layers to one rating."""

    def __init__(self, n_users, n_items, n_factors=None, y_range=None, layers=(100,)):
        super().__init__()
        user_sz, item_sz = embedding_sizes(n_users, n_items) if n_factors is None else (n_factors, n_factors)
        self.user_factors, self.item_factors = embedding(n_users, user_sz), embedding(n_items, item_sz)
        self.user_bias = self.item_bias = None
        sizes = [user_sz + item_sz, *layers]
        hidden = [block for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
                  for block in (nn.Linear(n_in, n_out), nn.ReLU())]
        self.layers = nn.Sequential(*hidden, nn.Linear(sizes[-1], 1))
        self.y_range = None if y_range is None else tuple(y_range)

    def forward(self, x):
        embs = torch.cat([self.user_factors(x[:, 0]), self.item_factors(x[:, 1])], dim=1)
        return squash(self.layers(embs)[:, 0], self.y_range)


def build_model(kind, n_users, n_items, n_factors=50, y_range=None, layers=(100,)):
    """A fresh model of `kind` (dot, bias, scratch, nn; fastai's collab_learner model maps onto bias)."""
    if kind == "dot":
        return DotProduct(n_users, n_items, n_factors, y_range)
    if kind in ("bias", "fastai"):
        return DotProductBias(n_users, n_items, n_factors, y_range)
    if kind == "scratch":
        return DotProductBiasScratch(n_users, n_items, n_factors, y_range)
    if kind == "nn":
        return CollabNN(n_users, n_items, None, y_range, layers)
    raise ValueError(f"unknown model kind {kind!r}; one of {KINDS}")


def table(model, name):
    """The weight tensor behind `name` (user_factors, item_factors, user_bias, item_bias), or None."""
    part = getattr(model, name, None)
    return part.weight if isinstance(part, nn.Embedding) else part


@torch.no_grad()
def fill_unknown(model):
    """Set row 0 ("unknown") of every user and item table to the mean of the trained rows: cold start."""
    for name in TABLES:
        weight = table(model, name)
        if weight is not None and len(weight) > 1:
            weight[0] = weight[1:].mean(0)
    return model
