"""Predictions: class probabilities with test-time augmentation, split per target head and checked."""

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.data.load import DataLoader
from fastai.learner import Learner

from paddy.core import runtime
from paddy.core.config import parse_tta
from paddy.vision import multitask


class FlipInputs(Callback):
    """Mirror every input batch left-right (deterministic test-time augmentation)."""

    def before_batch(self):
        self.learn.xb = tuple(x.flip(-1) for x in self.xb)


def predict(learn: Learner, dl: DataLoader, tta: str, seed: int = 42) -> torch.Tensor:
    """Class probabilities for `dl` per the TTA setting: fastai's tta, plain+flipped mean, or one plain pass."""
    mode, n, beta = parse_tta(tta)
    runtime.seed_everything(seed)  # fastai's tta draws random augmentations
    # The loss function's activation (softmax, per head for multi-target) makes these probabilities, not logits.
    # no_logging: fastai's tta fires before_fit, which prints an empty epoch-table header into the training log.
    with learn.no_logging():
        if mode == "fastai":
            probs, _ = learn.tta(dl=dl, n=n, beta=beta)
        elif mode == "flip":
            plain, _ = learn.get_preds(dl=dl)
            flipped, _ = learn.get_preds(dl=dl, cbs=[FlipInputs()])
            probs = (plain + flipped) / 2
        else:
            probs, _ = learn.get_preds(dl=dl)
    return probs.float().cpu()


def split_probs(probs: torch.Tensor, vocabs: dict, targets: tuple) -> dict:
    """Per-target probability arrays, checked to be probabilities (each head's rows sum to 1)."""
    head_sizes = multitask.head_sizes_for(vocabs, targets)
    if len(targets) > 1:
        heads = multitask.split_heads(probs, head_sizes)
    else:
        heads = (probs,)
    arrays = {t: h.numpy().astype(np.float64) for t, h in zip(targets, heads, strict=True)}
    for target, array in arrays.items():
        if not np.allclose(array.sum(axis=1), 1.0, atol=1e-3):
            raise RuntimeError(f"{target} outputs are not probabilities (rows do not sum to 1): loss has no activation")
    return arrays
