"""Recommendations: the top-N unseen items for a user, with cold start and fold-in of a new user's ratings.

Cold start: a user (or item) the model never saw is index 0, whose factors and bias are the mean of the trained
ones (`models.fill_unknown`), so an unknown user gets the items a typical user would rate highest.
Fold-in: given a few ratings of a new user, only that user's vector and bias are fitted (Adam on their squared
error plus a little weight decay towards nothing), every item stays fixed; the rest of the model is untouched.
"""

import copy

import numpy as np
import torch
from torch.func import functional_call

from paddy.collab.evaluate import predict_index
from paddy.collab.interpret import find_item
from paddy.collab.models import table
from paddy.core.errors import DataError


def fold_in(fitted, item_indices, ratings, steps=200, lr=0.05, wd=0.01):
    """A copy of the model whose unknown-user row (index 0) is fitted to one new user's (item, rating) pairs."""
    model = copy.deepcopy(fitted.model).eval().requires_grad_(False)
    keys = {id(p): key for key, p in model.named_parameters()}
    weights = {keys[id(w)]: w for w in (table(model, "user_factors"), table(model, "user_bias")) if w is not None}
    params = {key: torch.nn.Parameter(w[0].clone()) for key, w in weights.items()}
    x = torch.tensor([[0, int(i)] for i in item_indices], dtype=torch.int64)
    y = torch.tensor(ratings, dtype=torch.float32)
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(steps):
        # Row 0 replaced by the trainable vector; every other row (and every item) stays fixed.
        tables = {key: torch.cat([params[key][None], w[1:]]) for key, w in weights.items()}
        loss = ((functional_call(model, tables, (x,)) - y) ** 2).mean()
        loss = loss + wd * sum((p ** 2).sum() for p in params.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for key, w in weights.items():
            w[0] = params[key]
    return model


def parse_rated(fitted, rated):
    """Item indices and ratings from "TITLE_OR_ID=RATING" strings; unknown titles raise DataError."""
    items, values = [], []
    for text in rated:
        title, sep, value = str(text).rpartition("=")
        try:
            rating = float(value)
        except ValueError:
            rating = None
        if not sep or not title or rating is None or not np.isfinite(rating):
            raise DataError(f"--rated {text!r} is not TITLE=RATING (e.g. 'Toy Story (1995)=4.5')")
        y_range = fitted.shape.get("y_range")
        if y_range and not y_range[0] < rating < y_range[1]:
            raise DataError(f"--rated {text!r}: the model predicts ratings in ({y_range[0]:g}, {y_range[1]:g}) "
                            "only; give a rating on the training data's scale")
        items.append(find_item(fitted, title))
        values.append(rating)
    return items, values


def recommend(fitted, user, n=10, rated=()):
    """Top-`n` items `user` has not rated: (item id, title, predicted rating) rows, and how the user was known."""
    index = fitted.user_index(user)
    model, seen, how = fitted.model, set(fitted.seen_by(index).tolist()), "known user"
    if index == 0:
        how = "unknown user: mean embedding and bias (cold start)"
    if rated:
        items, values = parse_rated(fitted, rated)
        # A new profile replaces what the model knew: fit only this user's vector and bias on the given ratings.
        model, index, seen = fold_in(fitted, items, values), 0, set(items)
        how = f"fold-in of {len(items)} rating(s): only this user's vector and bias fitted"
    n_items = len(fitted.items) + 1
    scores = predict_index(model, np.full(n_items, index), np.arange(n_items))
    scores[0] = -np.inf
    scores[list(seen)] = -np.inf
    top = np.argsort(-scores, kind="stable")[:n]
    return [(fitted.items[i - 1], fitted.title(i), float(scores[i])) for i in top if np.isfinite(scores[i])], how
