"""Honest evaluation: MSE/RMSE on held-out ratings, and top-N metrics (precision, recall, NDCG at k).

Top-N protocol: for each user with held-out ratings >= `threshold` (the relevant items), rank every item known
to the model that the user did not rate in training; a hit is a relevant item in the top k. Relevant items the
model never saw stay in the recall denominator (they cannot be recommended, and that is the model's loss).
"""

import math

import numpy as np
import torch


def mse(pred, target):
    """Mean squared error of two equal-length arrays."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return float(np.mean((pred - target) ** 2))


def rmse(pred, target):
    """Root mean squared error."""
    return math.sqrt(mse(pred, target))


def predict(fitted, users, items, bs=65536):
    """Predicted ratings for parallel sequences of user and item ids; unknown ids get the mean embedding."""
    u = np.array([fitted.user_index(user) for user in users], dtype=np.int64)
    i = np.array([fitted.item_index(item) for item in items], dtype=np.int64)
    return predict_index(fitted.model, u, i, bs)


def predict_index(model, user_idx, item_idx, bs=65536):
    """Predicted ratings for parallel arrays of user and item indices."""
    x = torch.from_numpy(np.stack([np.asarray(user_idx), np.asarray(item_idx)], axis=1).astype(np.int64))
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[s:s + bs]) for s in range(0, len(x), bs)] or [torch.zeros(0)]).numpy()


def evaluate_ratings(fitted, frame):
    """MSE, RMSE and counts on a ratings frame; `cold` counts ratings whose user or item the model never saw."""
    pred = predict(fitted, frame["user"], frame["item"])
    users = np.array([fitted.user_index(u) for u in frame["user"]])
    items = np.array([fitted.item_index(i) for i in frame["item"]])
    value = mse(pred, frame["rating"].to_numpy())
    return {"mse": value, "rmse": math.sqrt(value), "n": len(frame), "cold": int(((users == 0) | (items == 0)).sum())}


def precision_at_k(ranked, relevant, k):
    """Share of the top-k ranked items that are relevant."""
    return len(set(ranked[:k]) & set(relevant)) / k


def recall_at_k(ranked, relevant, k):
    """Share of the relevant items found in the top k (0 when nothing is relevant)."""
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if len(relevant) else 0.0


def ndcg_at_k(ranked, relevant, k):
    """Binary-relevance NDCG@k: DCG of the top k over the best possible DCG."""
    relevant = set(relevant)
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def score_all_items(fitted, user_index):
    """Predicted rating of every known item (indices 1..n) for one user index; position 0 is the unknown item."""
    n_items = len(fitted.items) + 1
    return predict_index(fitted.model, np.full(n_items, user_index), np.arange(n_items))


def top_n_metrics(fitted, frame, k=10, threshold=4.0):
    """Mean precision@k, recall@k and NDCG@k over held-out users with at least one rating >= `threshold`."""
    liked = frame[frame["rating"] >= threshold]
    rows = []
    for user, group in liked.groupby("user", sort=True):
        index = fitted.user_index(user)
        scores = score_all_items(fitted, index)
        scores[0] = -np.inf
        scores[fitted.seen_by(index)] = -np.inf
        ranked = np.argsort(-scores, kind="stable")[:k].tolist()
        relevant = [fitted.item_index(item) or f"unseen:{item}" for item in group["item"]]
        rows.append((precision_at_k(ranked, relevant, k), recall_at_k(ranked, relevant, k),
                     ndcg_at_k(ranked, relevant, k)))
    means = np.mean(rows, axis=0) if rows else np.zeros(3)
    return {f"precision@{k}": float(means[0]), f"recall@{k}": float(means[1]), f"ndcg@{k}": float(means[2]),
            "users": len(rows), "threshold": threshold}
