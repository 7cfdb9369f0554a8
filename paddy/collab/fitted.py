"""A fitted collaborative-filtering model with everything needed to use it without the data, saved as one file.

`model.pth` holds the state dict, the model's shape, the user and item id maps (index i + 1 is the i-th id;
0 is unknown), the item titles, and the (user, item) pairs seen in training with their ratings (recommendations skip
them, fold-in refits a known user on them, AutoRec and SVD++ rebuild their inputs from them).
It is a plain dict of tensors, lists and numbers, loadable with `torch.load(weights_only=True)`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paddy.collab.models import HISTORY_KINDS, build_model
from paddy.core import atomic
from paddy.core.errors import DataError

MODEL_FILE = "model.pth"


@dataclass
class CollabModel:
    """A trained model plus its id maps, titles and training pairs."""

    model: object
    kind: str
    shape: dict  # n_users, n_items, n_factors, y_range, layers (a blend: members, clip): enough to rebuild it
    users: list
    items: list
    titles: list
    seen: np.ndarray  # (n, 2) int64 user and item indices of the training ratings
    ratings: np.ndarray | None = None  # (n,) float32 training ratings, parallel to `seen`

    def user_index(self, user):
        """Index of `user` (its id as text), or 0 for an unknown user (cold start)."""
        return self._lookup("_user_map", self.users).get(str(user), 0)

    def item_index(self, item):
        """Index of `item` (its id as text), or 0 for an unknown item (cold start)."""
        return self._lookup("_item_map", self.items).get(str(item), 0)

    def _lookup(self, name, ids):
        if getattr(self, name, None) is None:
            setattr(self, name, {value: i + 1 for i, value in enumerate(ids)})
        return getattr(self, name)

    def title(self, index):
        """Title of the item at `index` (1-based; 0 is the unknown item)."""
        return "(unknown item)" if index == 0 else self.titles[index - 1]

    def item_counts(self):
        """Training ratings per item index (index 0 counts nothing)."""
        return np.bincount(self.seen[:, 1], minlength=len(self.items) + 1)

    def seen_by(self, user_index):
        """Item indices `user_index` rated in training."""
        return self.seen[self.seen[:, 0] == user_index, 1]

    def rated_by(self, user_index):
        """(item indices, ratings) of `user_index`'s training ratings."""
        if self.ratings is None:  # a model saved before ratings were kept: nothing known to fold onto
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        mine = self.seen[:, 0] == user_index
        return self.seen[mine, 1], self.ratings[mine]


@dataclass
class FitResult:
    """A fitted model and how the fit went: per-epoch losses and seconds."""

    fitted: object
    history: list  # one dict per epoch: epoch, train_loss, valid_loss, seconds, cpu_seconds (a blend: per member)
    threads: int
    info: dict = field(default_factory=dict)  # a blend's weights, holdout size and MSEs, total seconds


def save_model(fitted, path):
    """Write `fitted` to `path` atomically as a weights-only torch file."""
    state = {"kind": fitted.kind, "shape": dict(fitted.shape), "users": list(fitted.users),
             "items": list(fitted.items), "titles": list(fitted.titles),
             "seen": torch.from_numpy(fitted.seen.astype(np.int64)),
             "ratings": torch.from_numpy(np.asarray(fitted.ratings, dtype=np.float32)),
             "state_dict": {k: v.detach().cpu() for k, v in fitted.model.state_dict().items()}}
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def rebuild(kind, shape, history):
    """An untrained module of `kind` with the saved `shape` (a blend's members too) and training `history`."""
    y_range = tuple(shape["y_range"]) if shape["y_range"] else None
    parts = {member["kind"]: rebuild(member["kind"], {**shape, "members": None, **member}, history)
             for member in shape.get("members") or ()}
    return build_model(kind, shape["n_users"], shape["n_items"], shape["n_factors"], y_range, tuple(shape["layers"]),
                       history if kind in HISTORY_KINDS else None, parts, shape.get("clip"))


def load_model(folder):
    """Load the CollabModel saved in `folder` (or the model.pth file itself)."""
    path = Path(folder)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"no {MODEL_FILE} at {folder}; train one first with `paddy collab --out DIR`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- torch raises many types for a corrupt file; all mean the same
        raise DataError(f"{path} is not a readable collab model ({type(error).__name__}); retrain it") from None
    seen = state["seen"].numpy()
    ratings = state["ratings"].numpy() if "ratings" in state else None
    model = rebuild(state["kind"], state["shape"], (seen, ratings))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:  # a blend missing a member, or a file from another model
        missing = sorted({key.split(".")[1] if key.startswith("members.") else key
                          for key in model.state_dict() if key not in state["state_dict"]})
        detail = f"no weights for {', '.join(missing)}" if missing else str(error).splitlines()[0]
        raise DataError(f"{path}: {detail}; retrain it with `paddy collab --model {state['kind']}`") from None
    model.eval()
    return CollabModel(model, state["kind"], state["shape"], state["users"], state["items"], state["titles"],
                       seen, ratings)
