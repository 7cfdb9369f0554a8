"""Multi-target loss, metrics and head splitting on hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from paddy.errors import ConfigError
from paddy.multitask import (
    MultiTargetLoss,
    head_sizes_for,
    multitask_metrics,
    split_heads,
)

# 3 diseases x 4 varieties: head sizes must follow the vocabs, never a literal 10.
VOCABS = {"label": ["blast", "hispa", "normal"], "variety": ["ADT45", "IR20", "Ponni", "RR"]}
SIZES = (3, 4)
LOGITS = torch.tensor([
    [2.0, 0.5, -1.0, 0.1, 0.2, 3.0, -0.5],
    [0.0, 1.5, 0.3, 2.0, 0.0, 0.0, 0.0],
    [-1.0, -2.0, 4.0, 0.0, 0.0, 0.1, 1.0],
    [0.3, 0.2, 0.1, -1.0, 5.0, 0.0, 0.0],
])
LABEL = torch.tensor([0, 2, 2, 1])  # argmax 0, 1, 2, 0 -> 2 wrong of 4
VARIETY = torch.tensor([2, 0, 3, 1])  # argmax 2, 0, 3, 1 -> all right


def _ce_by_hand(logits, target):
    """Cross-entropy written out: mean of logsumexp(row) - row[target]."""
    rows = [torch.logsumexp(row, 0) - row[t] for row, t in zip(logits, target)]
    return torch.stack(rows).mean()


def test_head_sizes_follow_the_vocabs():
    assert head_sizes_for(VOCABS, ("label", "variety")) == (3, 4)
    assert head_sizes_for(VOCABS, ("label",)) == (3,)
    with pytest.raises(ConfigError):
        head_sizes_for({"label": ["a"]}, ("label", "variety"))


def test_split_heads_slices_the_last_dimension():
    label, variety = split_heads(LOGITS, SIZES)
    assert torch.equal(label, LOGITS[:, :3]) and torch.equal(variety, LOGITS[:, 3:])
    with pytest.raises(ValueError):
        split_heads(LOGITS, (3, 3))
    three = split_heads(torch.arange(6.0)[None], (1, 2, 3))
    assert [h.tolist() for h in three] == [[[0.0]], [[1.0, 2.0]], [[3.0, 4.0, 5.0]]]


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 0.5), (0.0, 2.0)])
def test_combined_loss_is_the_weighted_sum_of_cross_entropies(weights):
    loss = MultiTargetLoss(SIZES, weights)(LOGITS, LABEL, VARIETY)
    expected = weights[0] * _ce_by_hand(LOGITS[:, :3], LABEL) + weights[1] * _ce_by_hand(LOGITS[:, 3:], VARIETY)
    assert loss.shape == () and torch.allclose(loss, expected, atol=1e-6)


def test_loss_defaults_to_equal_weights_and_reduces_per_item_on_request():
    loss_func = MultiTargetLoss(SIZES)
    assert loss_func.weights == (1.0, 1.0)
    loss_func.reduction = "none"  # what fastai's get_preds(with_loss=True) does
    per_item = loss_func(LOGITS, LABEL, VARIETY)
    expected = (F.cross_entropy(LOGITS[:, :3], LABEL, reduction="none")
                + F.cross_entropy(LOGITS[:, 3:], VARIETY, reduction="none"))
    assert per_item.shape == (4,) and torch.allclose(per_item, expected)


def test_loss_gradient_flows_to_both_heads_by_weight():
    logits = LOGITS.clone().requires_grad_()
    MultiTargetLoss(SIZES, (1.0, 0.0))(logits, LABEL, VARIETY).backward()
    assert logits.grad[:, :3].abs().sum() > 0 and logits.grad[:, 3:].abs().sum() == 0


def test_loss_refuses_bad_weights_and_target_counts():
    for bad in [(1.0,), (1.0, -0.5), (0.0, 0.0)]:
        with pytest.raises(ConfigError):
            MultiTargetLoss(SIZES, bad)
    with pytest.raises(ValueError):
        MultiTargetLoss(SIZES)(LOGITS, LABEL)


def test_activation_is_a_softmax_per_head():
    probs = MultiTargetLoss(SIZES).activation(LOGITS)
    assert probs.shape == LOGITS.shape and (probs >= 0).all() and (probs <= 1).all()
    label, variety = split_heads(probs, SIZES)
    assert torch.allclose(label.sum(1), torch.ones(4)) and torch.allclose(variety.sum(1), torch.ones(4))
    assert torch.allclose(label, F.softmax(LOGITS[:, :3], 1))


def test_decodes_is_an_argmax_per_head():
    label, variety = MultiTargetLoss(SIZES).decodes(MultiTargetLoss(SIZES).activation(LOGITS))
    assert label.tolist() == [0, 1, 2, 0] and variety.tolist() == [2, 0, 3, 1]


def test_metrics_are_named_per_target_and_computed_per_head():
    metrics = multitask_metrics(("label", "variety"), SIZES)
    values = {m.name: float(m(LOGITS, LABEL, VARIETY)) for m in metrics}
    assert list(values) == ["label_error", "variety_error", "label_loss", "variety_loss"]
    assert values["label_error"] == 0.5 and values["variety_error"] == 0.0
    assert math.isclose(values["label_loss"], float(_ce_by_hand(LOGITS[:, :3], LABEL)), rel_tol=1e-6)
    assert math.isclose(values["variety_loss"], float(_ce_by_hand(LOGITS[:, 3:], VARIETY)), rel_tol=1e-6)


class _Batch:
    """What a fastai metric reads from a Learner after a validation batch: pred and yb."""

    def __init__(self, pred, *yb):
        self.pred, self.yb = pred, yb


def test_metrics_average_over_batches_weighted_by_batch_size():
    metrics = multitask_metrics(("label", "variety"), SIZES)
    for metric in metrics:
        metric.reset()
        # A batch of 3 then a batch of 1: the average must count items, not batches.
        metric.accumulate(_Batch(LOGITS[:3], LABEL[:3], VARIETY[:3]))
        metric.accumulate(_Batch(LOGITS[3:], LABEL[3:], VARIETY[3:]))
    label_error, variety_error, label_loss, _ = (m.value for m in metrics)
    assert label_error == pytest.approx(0.5) and variety_error == 0.0
    assert label_loss == pytest.approx(float(_ce_by_hand(LOGITS[:, :3], LABEL)), rel=1e-6)


def test_metrics_refuse_mismatched_targets_and_sizes():
    with pytest.raises(ConfigError):
        multitask_metrics(("label", "variety"), (3,))
    with pytest.raises(ConfigError):
        multitask_metrics(("label",), (0,))


def test_loss_takes_fastai_tensor_types_and_keeps_the_gradient():
    from fastai.torch_core import TensorBase, TensorCategory

    logits = TensorBase(LOGITS.clone()).requires_grad_()
    loss = MultiTargetLoss(SIZES)(logits, TensorCategory(LABEL), TensorCategory(VARIETY))
    loss.backward()
    assert torch.allclose(loss.detach(), MultiTargetLoss(SIZES)(LOGITS, LABEL, VARIETY))
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_loss_and_metrics_survive_pickling_as_learn_export_needs():
    import pickle

    loss_func = pickle.loads(pickle.dumps(MultiTargetLoss(SIZES, (1.0, 0.5))))
    assert loss_func.head_sizes == SIZES and loss_func.weights == (1.0, 0.5)
    metric = pickle.loads(pickle.dumps(multitask_metrics(("label", "variety"), SIZES)[1]))
    assert metric.name == "variety_error" and float(metric(LOGITS, LABEL, VARIETY)) == 0.0
