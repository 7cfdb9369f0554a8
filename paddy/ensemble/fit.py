"""Fitted ensembles on out-of-fold (OOF) probabilities: pure numpy, no files.

Shapes: `member_probs` is (members, rows, classes), `y` the true class index per row, `folds` the fold per row.
Weights are non-negative and sum to one. Two fitters, both started from the best single member and accepting only
improvements, so on the rows they were fitted on a blend is never worse than that member:
  caruana  greedy ensemble selection with replacement (Caruana et al. 2004): add the member that most improves the
           running average, keep the best ensemble seen; weights are how often each member was picked
  hill     coordinate hill climbing on the weights with a halving step
The objective is log loss, or accuracy with log loss breaking ties (accuracy alone is flat almost everywhere).
Honest scores are nested: weights fitted on K-1 folds' rows, scored on the held-out fold, averaged over folds.
"""

from dataclasses import dataclass

import numpy as np

from paddy.core.errors import ConfigError, DataError

METHODS = ("equal", "caruana", "hill")
METRICS = ("logloss", "accuracy")
EPS = 1e-15  # probabilities are clipped here before the log, as scikit-learn's log_loss does
CARUANA_ROUNDS = 40  # picks with replacement; weights are then multiples of 1/40 at the finest
HILL_STEP, HILL_MIN_STEP = 0.5, 1 / 128
TOLERANCE = 1e-12  # an "improvement" smaller than float noise is no improvement


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the true class (rows renormalised, clipped at EPS)."""
    probs = np.asarray(probs, dtype=np.float64)
    total = probs.sum(axis=1)
    true = probs[np.arange(len(y)), y] / np.where(total > 0, total, 1.0)
    return float(-np.mean(np.log(np.clip(true, EPS, 1.0)))) if len(y) else float("nan")


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose largest probability is the true class (ties go to the earlier class)."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == y)) if len(y) else float("nan")


def blend(member_probs: np.ndarray, weights) -> np.ndarray:
    """The weighted average of the members' probabilities (weights normalised)."""
    weights = np.asarray(weights, dtype=np.float64)
    return np.tensordot(weights / weights.sum(), member_probs, axes=1)


def objective(probs: np.ndarray, y: np.ndarray, metric: str) -> tuple:
    """A tuple to minimise: (log loss,) or (-accuracy, log loss)."""
    loss = log_loss(probs, y)
    return (loss,) if metric == "logloss" else (-accuracy(probs, y), loss)


def check_inputs(member_probs, y, folds=None) -> tuple:
    """The inputs as arrays, or DataError: (M, N, C) finite probabilities >= 0, classes and folds per row."""
    member_probs, y = np.asarray(member_probs, dtype=np.float64), np.asarray(y)
    if member_probs.ndim != 3 or 0 in member_probs.shape:
        raise DataError(f"member probabilities must be (members, rows, classes), got shape {member_probs.shape}")
    if not np.isfinite(member_probs).all() or (member_probs < 0).any():
        raise DataError("OOF probabilities must be finite and >= 0; a member is corrupt, train it again")
    if y.shape != member_probs.shape[1:2] or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 \
            or y.max() >= member_probs.shape[2]:
        raise DataError(f"need one true class index in 0..{member_probs.shape[2] - 1} per row")
    if folds is not None and np.asarray(folds).shape != y.shape:
        raise DataError(f"need one fold per row: {np.asarray(folds).shape} folds for {len(y)} rows")
    return member_probs, y


def best_member(member_probs: np.ndarray, y: np.ndarray, metric: str = "logloss") -> int:
    """Index of the member with the best objective (the first, on a tie)."""
    scores = [objective(p, y, metric) for p in member_probs]
    return min(range(len(scores)), key=lambda m: scores[m])


def fit_caruana(member_probs: np.ndarray, y: np.ndarray, metric: str = "logloss",
                rounds: int = CARUANA_ROUNDS) -> np.ndarray:
    """Weights by greedy selection with replacement, from the best member; the best ensemble seen wins."""
    counts = np.zeros(len(member_probs))
    first = best_member(member_probs, y, metric)
    counts[first], total = 1, member_probs[first].copy()
    best_score, best_counts = objective(total, y, metric), counts.copy()
    for picks in range(1, rounds):
        scores = [objective((total + p) / (picks + 1), y, metric) for p in member_probs]
        pick = min(range(len(scores)), key=lambda m: scores[m])
        counts[pick] += 1
        total += member_probs[pick]
        if _better(scores[pick], best_score):
            best_score, best_counts = scores[pick], counts.copy()
    return best_counts / best_counts.sum()


def fit_hill(member_probs: np.ndarray, y: np.ndarray, metric: str = "logloss", step: float = HILL_STEP,
             min_step: float = HILL_MIN_STEP) -> np.ndarray:
    """Weights by coordinate hill climbing from the best member: move one weight by +-step, halve when stuck."""
    weights = np.zeros(len(member_probs))
    weights[best_member(member_probs, y, metric)] = 1.0
    score = objective(blend(member_probs, weights), y, metric)
    while step >= min_step:
        improved = False
        for m in range(len(weights)):
            for delta in (step, -step):
                trial = weights.copy()
                trial[m] = max(0.0, trial[m] + delta)
                if trial.sum() == 0:
                    continue
                trial /= trial.sum()
                trial_score = objective(blend(member_probs, trial), y, metric)
                if _better(trial_score, score):
                    weights, score, improved = trial, trial_score, True
        if not improved:
            step /= 2
    return weights


def fit_weights(member_probs, y, method: str = "caruana", metric: str = "logloss") -> np.ndarray:
    """Non-negative weights summing to one, fitted on these rows by `method` for `metric`."""
    check_method(method, metric)
    member_probs, y = check_inputs(member_probs, y)
    if method == "equal" or len(member_probs) == 1:
        return np.full(len(member_probs), 1.0 / len(member_probs))
    return (fit_caruana if method == "caruana" else fit_hill)(member_probs, y, metric)


def check_method(method: str, metric: str) -> None:
    """ConfigError unless method and metric are known."""
    if method not in METHODS:
        raise ConfigError(f"--fit must be one of {', '.join(METHODS)}, got {method!r}")
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")


@dataclass(frozen=True)
class FoldScores:
    """Accuracy and log loss on each held-out fold, in fold order."""

    accuracy: tuple
    logloss: tuple

    @property
    def mean_accuracy(self) -> float:
        """Accuracy averaged over folds."""
        return float(np.mean(self.accuracy))

    @property
    def std_accuracy(self) -> float:
        """Standard deviation of accuracy over folds (population, ddof=0)."""
        return float(np.std(self.accuracy))

    @property
    def mean_logloss(self) -> float:
        """Log loss averaged over folds."""
        return float(np.mean(self.logloss))


def fold_scores(probs: np.ndarray, y: np.ndarray, folds: np.ndarray, fold_ids) -> FoldScores:
    """FoldScores of one set of probabilities over `fold_ids`."""
    masks = [folds == f for f in fold_ids]
    return FoldScores(accuracy=tuple(accuracy(probs[m], y[m]) for m in masks),
                      logloss=tuple(log_loss(probs[m], y[m]) for m in masks))


def nested_scores(member_probs, y, folds, method: str = "caruana", metric: str = "logloss",
                  given=None) -> tuple:
    """The fitted blend scored honestly: per fold, weights fitted on the other folds' rows; and those weights.

    `given` weights (the user's) are fitted on nothing: every fold is scored with them.
    """
    member_probs, y = check_inputs(member_probs, y, folds)
    folds = np.asarray(folds)
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise DataError(f"nested CV needs at least 2 folds, the OOF rows have {len(fold_ids)}")
    held, fold_weights = np.empty_like(member_probs[0]), []
    for f in fold_ids:
        out = folds == f
        weights = _given(given) if given is not None else fit_weights(member_probs[:, ~out], y[~out], method, metric)
        held[out] = blend(member_probs[:, out], weights)
        fold_weights.append(weights)
    return fold_scores(held, y, folds, fold_ids), np.array(fold_weights)


@dataclass(frozen=True)
class CVReport:
    """Everything `cross_validate` measured on the OOF rows."""

    method: str
    metric: str
    members: tuple  # FoldScores per member
    member_accuracy: tuple  # OOF accuracy per member, all rows
    member_logloss: tuple
    equal: FoldScores
    equal_accuracy: float  # the equal-weight blend on all OOF rows
    equal_logloss: float
    nested: FoldScores  # the fitted blend, weights never fitted on the fold they score
    fold_weights: np.ndarray  # (folds, members): the weights each nested fit chose
    weights: np.ndarray  # fitted on all OOF rows: the weights for the test set
    fitted_accuracy: float  # those weights on the rows they were fitted on (optimistic; for reference)
    fitted_logloss: float

    @property
    def best_member(self) -> int:
        """Index of the member with the best OOF accuracy (log loss breaks ties): chosen with hindsight."""
        return min(range(len(self.members)), key=lambda m: (-self.member_accuracy[m], self.member_logloss[m]))

    @property
    def gain_over_equal(self) -> float:
        """Nested accuracy minus equal weights' accuracy, both averaged over folds."""
        return self.nested.mean_accuracy - self.equal.mean_accuracy

    @property
    def gain_over_best(self) -> float:
        """Nested accuracy minus the best member's accuracy, both averaged over folds."""
        return self.nested.mean_accuracy - self.members[self.best_member].mean_accuracy


def cross_validate(member_probs, y, folds, method: str = "caruana", metric: str = "logloss",
                   given=None) -> CVReport:
    """Score members, equal weights and the fitted blend (nested) on OOF rows; fit the final weights on all rows.

    With `given` weights nothing is fitted: the report scores those (method "given").
    """
    check_method(method, metric)
    member_probs, y = check_inputs(member_probs, y, folds)
    folds = np.asarray(folds)
    fold_ids = np.unique(folds)
    nested, fold_weights = nested_scores(member_probs, y, folds, method, metric, given)
    weights = _given(given) if given is not None else fit_weights(member_probs, y, method, metric)
    method = "given" if given is not None else method
    equal = member_probs.mean(axis=0)
    fitted = blend(member_probs, weights)
    return CVReport(
        method=method, metric=metric,
        members=tuple(fold_scores(p, y, folds, fold_ids) for p in member_probs),
        member_accuracy=tuple(accuracy(p, y) for p in member_probs),
        member_logloss=tuple(log_loss(p, y) for p in member_probs),
        equal=fold_scores(equal, y, folds, fold_ids), equal_accuracy=accuracy(equal, y),
        equal_logloss=log_loss(equal, y), nested=nested, fold_weights=fold_weights, weights=weights,
        fitted_accuracy=accuracy(fitted, y), fitted_logloss=log_loss(fitted, y))


def _given(weights):
    weights = np.asarray(weights, dtype=np.float64)
    return weights / weights.sum()


def _better(a, b):
    """True when objective tuple `a` beats `b` by more than float noise (lexicographically)."""
    for x, z in zip(a, b):
        if x < z - TOLERANCE:
            return True
        if x > z + TOLERANCE:
            return False
    return False


def format_cv(report: CVReport, names: list) -> str:
    """A plain-text table of a CVReport: members, equal weights and the fitted blend, then the nested gains."""
    header = ("member", "OOF acc", "OOF logloss", "fold acc (mean +- std)", "weight")
    rows = [header]
    for i, name in enumerate(names):
        scores = report.members[i]
        rows.append((name, _pct(report.member_accuracy[i]), f"{report.member_logloss[i]:.4f}", _spread(scores),
                     f"{report.weights[i]:.3f}"))
    rows.append(("EQUAL WEIGHTS", _pct(report.equal_accuracy), f"{report.equal_logloss:.4f}", _spread(report.equal),
                 f"{1 / len(names):.3f} each"))
    rows.append((f"FITTED {report.method}/{report.metric} (nested)", "", f"{report.nested.mean_logloss:.4f}",
                 _spread(report.nested), ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    best = report.best_member
    nested = report.nested
    lines.append(f"nested CV accuracy {_pct(nested.mean_accuracy)} +- {nested.std_accuracy * 100:.2f} points: "
                 f"{_points(report.gain_over_equal)} over equal weights, {_points(report.gain_over_best)} over the "
                 f"best member ({names[best]}); log loss {nested.mean_logloss:.4f} vs equal "
                 f"{report.equal.mean_logloss:.4f}, best member {report.members[best].mean_logloss:.4f}")
    lines.append("(nested: each fold is scored with weights fitted on the other folds; the weights above, for the "
                 "test set, are fitted on all OOF rows)")
    return "\n".join(lines)


def _pct(value):
    return "n/a" if value is None or np.isnan(value) else f"{value * 100:.2f}%"


def _spread(scores):
    return f"{scores.mean_accuracy * 100:.2f} +- {scores.std_accuracy * 100:.2f}%"


def _points(gain):
    return f"{gain * 100:+.2f} points"
