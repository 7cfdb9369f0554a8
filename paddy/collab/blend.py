"""A linear blend of collaborative-filtering models, its weights fitted on held-out training ratings only.

Each member trains on most of the training ratings; least squares (an intercept and a little ridge) on the rest, a
held-out share of the TRAINING ratings (`blend_pct`), says how much to trust each; then every member trains again
on all the training ratings with the same recipe and the weights apply to those refits, as the Netflix Prize
blends did. The validation or test split never enters the weights.
"""

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from paddy.collab.data import random_split
from paddy.collab.evaluate import mse, predict
from paddy.collab.fitted import CollabModel, FitResult
from paddy.collab.models import Blend
from paddy.core.errors import DataError

RIDGE = 1e-4  # per rating: keeps the weights of near-collinear members finite without moving the fit


def blend_weights(preds: np.ndarray, target: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Least-squares weights for the columns of `preds`, then an intercept (last); a small ridge on the weights."""
    design = np.column_stack([np.asarray(preds, dtype=np.float64), np.ones(len(preds))])
    penalty = ridge * len(design) * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is free
    return np.linalg.solve(design.T @ design + penalty, design.T @ np.asarray(target, dtype=np.float64))


def holdout_split(train: pd.DataFrame, pct: float, seed: int) -> tuple:
    """(inner, holdout) frames: a seeded share `pct` of the training ratings held out for the blend weights."""
    inner, holdout = random_split(len(train), pct, seed)
    if len(inner) == 0 or len(holdout) == 0:
        raise DataError(f"a blend holds out {pct:g} of the {len(train)} training ratings for its weights, which "
                        "leaves none on one side; give more ratings or another --blend-pct")
    return train.iloc[inner].reset_index(drop=True), train.iloc[holdout].reset_index(drop=True)


def fit_blend(train: pd.DataFrame, valid: pd.DataFrame, config, fit: Callable, titles: dict | None = None,
              progress: bool = True) -> FitResult:
    """Fit every member on the inner split, the weights on the holdout, then refit the members on all of `train`.

    `fit` is the single-model fit (train.fit_collab), passed in so that this module needs nothing from train.
    """
    start = time.perf_counter()
    inner, holdout = holdout_split(train, config.blend_pct, config.seed)
    preds, member_mse = [], {}
    for kind in config.members:
        first = fit(inner, holdout, config.member(kind), titles, progress)
        preds.append(predict(first.fitted, holdout["user"], holdout["item"]))
        member_mse[kind] = mse(preds[-1], holdout["rating"])
    weights = blend_weights(np.stack(preds, axis=1), holdout["rating"].to_numpy())
    finals = {kind: fit(train, valid, config.member(kind), titles, progress) for kind in config.members}
    low, high = float(train["rating"].min()), float(train["rating"].max())
    model = Blend({kind: result.fitted.model for kind, result in finals.items()}, weights, clip=(low, high))
    first_fitted = next(iter(finals.values())).fitted
    shape = {key: first_fitted.shape[key] for key in ("y_range", "n_users", "n_items")}
    members = [{"kind": kind, "n_factors": r.fitted.shape["n_factors"], "layers": r.fitted.shape["layers"]}
               for kind, r in finals.items()]
    fitted = CollabModel(model, "blend", {**shape, "n_factors": None, "layers": [], "members": members,
                                          "clip": [low, high]},
                         first_fitted.users, first_fitted.items, first_fitted.titles, first_fitted.seen,
                         first_fitted.ratings)
    history = [{**row, "member": kind} for kind, result in finals.items() for row in result.history]
    info = {"weights": dict(zip([*config.members, "intercept"], map(float, weights), strict=True)),
            "holdout": len(holdout), "holdout_mse": {**member_mse, "blend": mse(np.stack(preds, 1) @ weights[:-1]
                                                                              + weights[-1], holdout["rating"])},
            "seconds": round(time.perf_counter() - start, 2)}
    return FitResult(fitted, history, config.threads, info)
