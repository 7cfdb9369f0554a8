"""Fitted ensembles on hand-made OOF arrays: metrics, Caruana selection, hill climbing, nested CV."""

import math

import numpy as np
import pytest

from paddy.core.errors import ConfigError, DataError
from paddy.ensemble.fit import (
    accuracy,
    blend,
    cross_validate,
    fit_caruana,
    fit_hill,
    fit_weights,
    format_cv,
    log_loss,
    nested_scores,
)


def noisy_members(seed=0, n=240, classes=4, qualities=(2.0, 1.0, 0.3)):
    """Members whose logits carry the true class with different strength, plus independent noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    members = []
    for quality in qualities:
        logits = rng.normal(size=(n, classes))
        logits[np.arange(n), y] += quality
        probs = np.exp(logits)
        members.append(probs / probs.sum(axis=1, keepdims=True))
    folds = np.arange(n) % 4
    return np.stack(members), y, folds


def test_metrics_on_hand_made_rows():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    y = np.array([0, 0, 1])
    assert accuracy(probs, y) == pytest.approx(1 / 3)  # the tie goes to class 0
    assert log_loss(probs, y) == pytest.approx(-(math.log(0.7) + math.log(0.4) + math.log(0.5)) / 3)
    assert log_loss(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-15))


@pytest.mark.parametrize("method", ["equal", "caruana", "hill"])
@pytest.mark.parametrize("metric", ["logloss", "accuracy"])
def test_the_ensemble_of_one_model_equals_that_model(method, metric):
    member_probs, y, folds = noisy_members(qualities=(1.0,))
    weights = fit_weights(member_probs, y, method, metric)
    assert weights.tolist() == [1.0]
    np.testing.assert_allclose(blend(member_probs, weights), member_probs[0])
    report = cross_validate(member_probs, y, folds, method, metric)
    assert report.nested == report.members[0] == report.equal
    assert report.gain_over_best == report.gain_over_equal == 0.0


@pytest.mark.parametrize("fit", [fit_caruana, fit_hill])
@pytest.mark.parametrize("metric", ["logloss", "accuracy"])
@pytest.mark.parametrize("seed", range(4))
def test_a_fitted_blend_is_never_worse_than_the_best_member_on_its_rows(fit, metric, seed):
    member_probs, y, _ = noisy_members(seed=seed, n=60)
    weights = fit(member_probs, y, metric)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    fitted = blend(member_probs, weights)
    if metric == "logloss":
        assert log_loss(fitted, y) <= min(log_loss(p, y) for p in member_probs) + 1e-12
    else:
        assert accuracy(fitted, y) >= max(accuracy(p, y) for p in member_probs)


@pytest.mark.parametrize("fit", [fit_caruana, fit_hill])
def test_the_better_of_a_good_and_a_useless_member_takes_all_the_weight(fit):
    y = np.array([0, 1, 2, 0, 1, 2])
    good = np.eye(3)[y] * 0.8 + 0.2 / 3  # confident and right
    useless = np.full((6, 3), 1 / 3)  # says nothing
    weights = fit(np.stack([useless, good]), y, "logloss")
    assert weights.tolist() == [0.0, 1.0]


def test_caruana_mixes_two_members_that_are_right_on_different_rows():
    # a is sure and right on rows 0-1, unsure on 2-3; b the other way round: the blend beats either alone.
    y = np.array([0, 0, 1, 1])
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.45, 0.55], [0.45, 0.55]])
    b = np.array([[0.55, 0.45], [0.55, 0.45], [0.1, 0.9], [0.1, 0.9]])
    weights = fit_caruana(np.stack([a, b]), y, "logloss")
    assert weights == pytest.approx([0.5, 0.5])
    assert log_loss(blend(np.stack([a, b]), weights), y) < min(log_loss(a, y), log_loss(b, y))


def test_caruana_repeats_a_member_with_replacement():
    # a is sure on every row and wrong on one, b says nothing: log loss is least at w_a = 0.625 (derivative zero
    # at 3 * 0.4 / (0.5 + 0.4 w) = 0.4 / (0.5 - 0.4 w)), which only picking a 25 times out of 40 reaches.
    y = np.array([0, 0, 0, 1])
    a = np.array([[0.9, 0.1]] * 4)
    b = np.full((4, 2), 0.5)
    weights = fit_caruana(np.stack([a, b]), y, "logloss")
    assert weights == pytest.approx([0.625, 0.375], abs=1 / 40)
    assert fit_hill(np.stack([a, b]), y, "logloss") == pytest.approx([0.625, 0.375], abs=1 / 64)


def test_nested_scores_fit_weights_without_the_held_out_fold():
    member_probs, y, folds = noisy_members(seed=1)
    scores, fold_weights = nested_scores(member_probs, y, folds, "hill", "logloss")
    assert fold_weights.shape == (4, 3) and np.allclose(fold_weights.sum(axis=1), 1.0)
    for f in range(4):
        out = folds == f
        weights = fit_hill(member_probs[:, ~out], y[~out], "logloss")
        np.testing.assert_allclose(fold_weights[f], weights)
        assert scores.accuracy[f] == accuracy(blend(member_probs[:, out], weights), y[out])


def test_cross_validate_reports_members_equal_and_nested():
    member_probs, y, folds = noisy_members(seed=2)
    report = cross_validate(member_probs, y, folds, "caruana", "logloss")
    assert report.best_member == 0
    assert report.member_accuracy[0] == accuracy(member_probs[0], y)
    assert len(report.members[0].accuracy) == 4
    assert report.equal_accuracy == accuracy(member_probs.mean(axis=0), y)
    assert report.fitted_logloss <= min(report.member_logloss) + 1e-12
    assert report.weights[0] == max(report.weights)
    assert report.gain_over_equal == pytest.approx(report.nested.mean_accuracy - report.equal.mean_accuracy)


def test_bad_inputs_are_refused():
    member_probs, y, folds = noisy_members(n=20)
    with pytest.raises(ConfigError):
        fit_weights(member_probs, y, "stacking")
    with pytest.raises(ConfigError):
        fit_weights(member_probs, y, "hill", "auc")
    bad = member_probs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        fit_weights(bad, y)
    bad[0, 0, 0] = -0.1
    with pytest.raises(DataError, match="finite"):
        fit_weights(bad, y)
    with pytest.raises(DataError, match="class index"):
        fit_weights(member_probs, y + 10)
    with pytest.raises(DataError, match="2 folds"):
        nested_scores(member_probs, y, np.zeros_like(folds))


def test_format_cv_names_every_member_and_the_gains():
    member_probs, y, folds = noisy_members(seed=3)
    report = cross_validate(member_probs, y, folds, "hill", "accuracy")
    text = format_cv(report, ["strong", "middle", "weak"])
    for word in ("strong", "middle", "weak", "EQUAL WEIGHTS", "FITTED hill/accuracy (nested)", "over equal weights",
                 "over the best member (strong)"):
        assert word in text
    assert f"{report.weights[0]:.3f}" in text


def test_given_weights_are_scored_not_fitted():
    member_probs, y, folds = noisy_members(seed=4)
    report = cross_validate(member_probs, y, folds, "caruana", "logloss", given=(0, 1, 1))
    assert report.method == "given" and report.weights.tolist() == [0.0, 0.5, 0.5]
    assert (report.fold_weights == [0.0, 0.5, 0.5]).all()
    held = blend(member_probs, [0, 1, 1])
    assert report.nested.accuracy == tuple(accuracy(held[folds == f], y[folds == f]) for f in range(4))
