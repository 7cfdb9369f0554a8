"""Recommendations: the top-N unseen items for a user, with cold start and fold-in of new ratings.

Cold start: a user (or item) the model never saw is index 0, whose factors and bias are the mean of the trained
ones (`models.fill_unknown`), so an unknown user gets the items a typical user would rate highest.
Fold-in: given ratings, only that user's row is refitted (their vector and bias: the decoder row for AutoRec, p_u for
SVD++, each member's for a blend) on their known training ratings plus the new ones, every item fixed; a new user
starts from the mean row with the new ratings alone. SVD++ also takes the new items into the user's implicit
feedback, AutoRec a known user's new ratings into the items' input columns.
"""

import copy

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from paddy.collab.evaluate import predict_index
from paddy.collab.fitted import CollabModel
from paddy.collab.interpret import find_item
from paddy.collab.models import SVDpp, item_vectors, members, table
from paddy.core.errors import DataError

FOLD_LR = 0.05  # fold-in's Adam lr for a model without item vectors (CollabNN)


def replace_row(weight, row, values):
    """`weight` with row `row` replaced by `values`, differentiable in `values`."""
    return torch.cat([weight[:row], values[None], weight[row + 1:]])


def adam_step(params, grads, moments, step, lr, betas=(0.9, 0.999), eps=1e-8):
    """One Adam step in place on lists of tensors (moments: one (m, v) pair per tensor)."""
    # torch.optim.Adam's first use imports torch._dynamo (13 s here): too much for a one-user fold-in
    for param, grad, (m, v) in zip(params, grads, moments, strict=True):
        m.mul_(betas[0]).add_(grad, alpha=1 - betas[0])
        v.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
        denom = (v / (1 - betas[1] ** step)).sqrt_().add_(eps)
        param.addcdiv_(m, denom, value=-lr / (1 - betas[0] ** step))


def row_lr(model, item_indices, step):
    """Adam's lr for a user row: about `step` of output change per step, whatever the size of the item vectors."""
    # Adam moves every coordinate by about lr, so the rating moves by about lr * |item vector|_1: 50 small factors
    # want a far larger lr than AutoRec's 500 codes in (0, 1).
    vectors = item_vectors(model)
    if vectors is None:
        return FOLD_LR
    l1 = float(vectors[torch.as_tensor(np.asarray(item_indices, dtype=np.int64))].abs().sum(1).mean())
    return step / max(l1, 1e-3)


def fit_user_row(model, user, item_indices, ratings, steps=200, step=0.5, wd=0.01):
    """Fit row `user` of `model`'s user tables (in place) to (item, rating) pairs, every other weight fixed."""
    if hasattr(model, "observe_user"):
        model.observe_user(user, item_indices, ratings)
    keys = {id(p): key for key, p in model.named_parameters()}
    weights = {keys[id(w)]: w for w in (table(model, "user_factors"), table(model, "user_bias")) if w is not None}
    rows = {key: w[user].clone().requires_grad_(True) for key, w in weights.items()}
    moments = [(torch.zeros_like(r), torch.zeros_like(r)) for r in rows.values()]
    x = torch.tensor([[user, int(i)] for i in item_indices], dtype=torch.int64)
    y = torch.tensor(np.asarray(ratings, dtype=np.float32))
    lr = row_lr(model, item_indices, step)
    for k in range(1, steps + 1):
        tables = {key: replace_row(w, user, rows[key]) for key, w in weights.items()}
        loss = ((functional_call(model, tables, (x,)) - y) ** 2).mean()
        loss = loss + wd * sum((r ** 2).sum() for r in rows.values())
        grads = torch.autograd.grad(loss, list(rows.values()))
        with torch.no_grad():
            adam_step(list(rows.values()), grads, moments, k, lr)
    with torch.no_grad():
        for key, w in weights.items():
            w[user] = rows[key]


def fold_in(fitted: CollabModel, item_indices, ratings, user_index: int = 0, steps: int = 200, step: float = 0.5,
            wd: float = 0.01) -> nn.Module:
    """A copy of the model whose row `user_index` (0: a new user) is fitted to that user's (item, rating) pairs."""
    model = copy.deepcopy(fitted.model).eval().requires_grad_(False)
    for member in members(model):
        fit_user_row(member, user_index, item_indices, ratings, steps, step, wd)
    return model


def match_note(fitted, text, index):
    """How a typed title was read, when it was not the item's exact title or id ('' otherwise)."""
    typed = str(text).strip().lower()
    if typed in (fitted.title(index).lower(), str(fitted.items[index - 1]).lower()):
        return ""
    return f"{str(text).strip()!r} taken as {fitted.title(index)}"


def parse_rated(fitted, rated):
    """Item indices, ratings and notes on partial titles from "TITLE_OR_ID=RATING" strings; bad ones: DataError."""
    items, values, notes = [], [], []
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
        notes.append(match_note(fitted, title, items[-1]))
    return items, values, [note for note in notes if note]


def merged_ratings(known, new):
    """(items, ratings) of `known` pairs updated by `new` ones (a new rating of a known item replaces it)."""
    merged = dict(zip(map(int, known[0]), map(float, known[1]), strict=True))
    merged.update(zip(map(int, new[0]), map(float, new[1]), strict=True))
    return list(merged), list(merged.values())


def needs_history(fitted):
    """Whether the model describes a user by the items they rated (SVD++, alone or in a blend)."""
    return any(isinstance(member, SVDpp) for member in members(fitted.model))


def recommend(fitted: CollabModel, user: str, n: int = 10, rated=()) -> tuple:
    """Top-`n` items `user` has not rated: (item id, title, predicted rating) rows, and how the user was known."""
    index = fitted.user_index(user)
    model, seen, how = fitted.model, set(fitted.seen_by(index).tolist()), "known user"
    if index == 0 and not rated:
        if needs_history(fitted):
            raise DataError(f"user {user!r} is not in the model, and SVD++ describes a user by the items they rated; "
                            "give their ratings with --rated TITLE=RATING (or use a model without svdpp)")
        how = "unknown user: mean embedding and bias (cold start)"
    if rated:
        items, values, notes = parse_rated(fitted, rated)
        known = fitted.rated_by(index) if index else ([], [])
        all_items, all_values = merged_ratings(known, (items, values))
        model, seen = fold_in(fitted, all_items, all_values, index), seen | set(items)
        base = f"on top of {len(known[0])} known" if index else "for a new user"
        how = (f"fold-in of {len(items)} rating(s) {base}: only this user's vector and bias refitted"
               + "".join(f"; {note}" for note in notes))
    n_items = len(fitted.items) + 1
    scores = predict_index(model, np.full(n_items, index), np.arange(n_items))
    scores[0] = -np.inf
    scores[list(seen)] = -np.inf
    top = np.argsort(-scores, kind="stable")[:n]
    return [(fitted.items[i - 1], fitted.title(i), float(scores[i])) for i in top if np.isfinite(scores[i])], how
