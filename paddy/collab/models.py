"""Latent-factor models for ratings, as the fastai book builds them (chapter 8), with one shared layout.

Every model takes a batch `x` of shape (bs, 2) holding (user index, item index) and returns (bs,) ratings.
Index 0 on each side is reserved for "unknown" (as fastai's Categorify reserves `#na#`): training never sees it,
and `fill_unknown` sets it to the mean of the trained rows afterwards, so an unseen user or item is predicted from
the mean embedding and mean bias instead of raising KeyError.

Every model exposes `user_factors`, `item_factors` (an `nn.Embedding` or a raw parameter) and `user_bias`,
`item_bias` (or None); `table(model, name)` returns the weight tensor behind any of them. AutoRec's item vectors are
computed (an item's code from its ratings), and a Blend has none of its own: `item_vectors` says which.

AutoRec and SVD++ also read the training ratings themselves (an item's column of ratings; which items each user
rated): `history` is the (user, item) index pairs and ratings of the training set, held in buffers that are rebuilt
from the saved pairs when a model is loaded, never stored twice.
"""

import numpy as np
import torch
from fastai.layers import sigmoid_range
from fastai.tabular.model import emb_sz_rule
from torch import nn

KINDS = ("dot", "bias", "scratch", "nn", "fastai", "autorec", "svdpp", "blend")
MEMBER_KINDS = ("dot", "bias", "scratch", "nn", "autorec", "svdpp")  # what a blend may hold
HISTORY_KINDS = ("autorec", "svdpp")  # models that read the training ratings at prediction time
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


class AutoRec(nn.Module):
    """I-AutoRec (Sedhain et al. 2015): an item's column of training ratings through a sigmoid code to every user.

    Read as a factor model: the item's code is its vector, decoder row u (weight and bias) is user u's vector and
    bias, so fold-in, cold start and similar items work as for the dot-product models.
    """

    def __init__(self, n_users, n_items, n_factors=500, y_range=None, history=None):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(n_users, n_factors), nn.Linear(n_factors, n_users)
        self.item_bias = None
        self.y_range = None if y_range is None else tuple(y_range)
        self.register_buffer("matrix", torch.zeros(n_items, n_users), persistent=False)
        self.register_buffer("unknown_code", torch.full((n_factors,), 0.5))  # the mean code, set by fill_unknown
        if history is not None:
            self.observe(*history)

    @property
    def user_factors(self):
        """Decoder rows: one vector per user."""
        return self.decoder.weight

    @property
    def user_bias(self):
        """Decoder bias: one per user."""
        return self.decoder.bias

    def observe(self, pairs, ratings):
        """Write (user, item) index pairs' ratings into the input matrix (items x users)."""
        pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.int64).reshape(-1, 2)
        with torch.no_grad():
            self.matrix[pairs[:, 1], pairs[:, 0]] = torch.as_tensor(np.asarray(ratings), dtype=torch.float32)

    def observe_user(self, user, items, ratings):
        """Take a known user's new ratings into the items' input columns."""
        if user:  # not the unknown user's column: its encoder weights never saw an input

            self.observe(np.array([[user, i] for i in items], dtype=np.int64).reshape(-1, 2), ratings)

    def item_codes(self, items):
        """Codes of item indices; the unknown item (0) gets the mean code."""
        codes = torch.sigmoid(self.encoder(self.matrix[items]))
        return torch.where((items == 0)[:, None], self.unknown_code, codes)

    def item_vectors(self):
        """Codes of every item (row 0 the unknown item)."""
        return self.item_codes(torch.arange(len(self.matrix)))

    def forward(self, x):
        users, items = x[:, 0], x[:, 1]
        unique, inverse = torch.unique(items, return_inverse=True)  # each item encoded once per batch
        # Decoding whole columns (items x users) and picking the pairs is one matrix product: cheaper than
        # gathering a decoder row per rating when batches hold whole items (measured: ~4x per batch).
        raw = self.decoder(self.item_codes(unique))[inverse, users]
        return squash(raw, self.y_range)

    @torch.no_grad()
    def fill_unknown(self):
        """The unknown item's code: the mean code of the known items."""
        if len(self.matrix) > 1:
            self.unknown_code.copy_(torch.sigmoid(self.encoder(self.matrix[1:])).mean(0))


class SVDpp(DotProductBias):
    """SVD++ (Koren 2008): user u is p_u + |N(u)|^-1/2 * sum of implicit factors y_j over the items j u rated."""

    def __init__(self, n_users, n_items, n_factors=50, y_range=None, history=None):
        super().__init__(n_users, n_items, n_factors, y_range)
        self.implicit = embedding(n_items, n_factors)
        self.register_buffer("history", self._history(torch.zeros(0, 2, dtype=torch.int64)), persistent=False)
        if history is not None:
            self.observe(*history)

    def _history(self, pairs):
        """The users x items sparse matrix with 1/sqrt(|N(u)|) where u rated the item, 0 elsewhere."""
        pairs = torch.unique(pairs, dim=0)
        counts = torch.bincount(pairs[:, 0], minlength=self.user_factors.num_embeddings).clamp(min=1)
        size = (self.user_factors.num_embeddings, self.implicit.num_embeddings)
        # one sparse product: 3-4x faster than gathering every (user, item) row and adding them up (measured)
        return torch.sparse_coo_tensor(pairs.T, counts[pairs[:, 0]].float() ** -0.5, size,
                                       check_invariants=False).coalesce()

    def observe(self, pairs, ratings=None):
        """Take the (user, item) index pairs as the implicit feedback: which items each user rated."""
        self.history = self._history(torch.as_tensor(np.asarray(pairs), dtype=torch.int64).reshape(-1, 2))

    def observe_user(self, user, items, ratings=None):
        """Add the items `user` rated to their implicit feedback."""
        new = torch.tensor([[user, int(i)] for i in items], dtype=torch.int64).reshape(-1, 2)
        self.history = self._history(torch.cat([self.history.indices().T, new]))

    def user_vectors(self):
        """p_u plus the normalised implicit sum, for every user (row 0: the unknown user)."""
        return self.user_factors.weight + torch.sparse.mm(self.history, self.implicit.weight)

    def raw(self, users, items):
        dot = (self.user_vectors()[users] * self.item_factors(items)).sum(1)
        return dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]

    @torch.no_grad()
    def fill_unknown(self):
        """The unknown user's p_0: the mean of every known user's whole vector (an unknown user has no history)."""
        if self.user_factors.num_embeddings > 1:
            self.user_factors.weight[0] = 0
            self.user_factors.weight[0] = self.user_vectors()[1:].mean(0)


class Blend(nn.Module):
    """A linear blend of member models: weights . their predictions + intercept, clipped to the rating range."""

    def __init__(self, members, weights=None, clip=None):
        super().__init__()
        self.members = nn.ModuleDict(members)
        self.register_buffer("weights", torch.zeros(len(self.members) + 1) if weights is None
                             else torch.as_tensor(np.asarray(weights), dtype=torch.float32))
        self.clip = None if clip is None else tuple(clip)
        self.user_factors = self.item_factors = self.user_bias = self.item_bias = None

    def forward(self, x):
        preds = torch.stack([member(x) for member in self.members.values()], dim=1)
        out = preds @ self.weights[:-1] + self.weights[-1]
        return out if self.clip is None else out.clamp(*self.clip)


def build_model(kind, n_users, n_items, n_factors=50, y_range=None, layers=(100,), history=None, members=None,
                clip=None):
    """A fresh model of `kind`; AutoRec and SVD++ take the training `history` (pairs, ratings), a blend its members.

    fastai's collab_learner model maps onto bias; `members` is {name: model} for a blend.
    """
    if kind == "autorec":
        return AutoRec(n_users, n_items, n_factors, y_range, history)
    if kind == "svdpp":
        return SVDpp(n_users, n_items, n_factors, y_range, history)
    if kind == "blend":
        return Blend(members or {}, clip=clip)
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
def item_vectors(model):
    """Every item's vector (row 0 the unknown item), or None without them (nn: not a metric space; a blend)."""
    if isinstance(model, CollabNN | Blend):
        return None
    if isinstance(model, AutoRec):
        return model.item_vectors()
    return table(model, "item_factors").detach()


def members(model):
    """The member models of a blend, or the model itself as its only member."""
    return list(model.members.values()) if isinstance(model, Blend) else [model]


@torch.no_grad()
def fill_unknown(model):
    """Set row 0 ("unknown") of every user and item table to the mean of the trained rows: cold start."""
    for member in members(model):
        for name in TABLES:
            weight = table(member, name)
            if weight is not None and len(weight) > 1:
                weight[0] = weight[1:].mean(0)
        if hasattr(member, "fill_unknown"):
            member.fill_unknown()
    return model
