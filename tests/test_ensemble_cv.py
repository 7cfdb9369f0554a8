"""`paddy ensemble` on K-fold members: OOF scores, fitted weights, nested CV, the log, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core import oof, run_folder
from paddy.ensemble.log import read_log

VOCAB = ("blast", "hispa", "normal")
TRAIN_IDS = tuple(f"{100000 + i}.jpg" for i in range(30))
TRUE = tuple(VOCAB[i % 3] for i in range(30))
FOLDS = tuple(i % 3 for i in range(30))
TEST_IDS = tuple(f"{200001 + i}.jpg" for i in range(6))


def make_data(folder, train_ids=TRAIN_IDS):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": list(TEST_IDS), "label": ""}).to_csv(folder / "sample_submission.csv", index=False)
    pd.DataFrame({"image_id": list(train_ids), "label": [TRUE[i % 30] for i in range(len(train_ids))]}).to_csv(
        folder / "train.csv", index=False)
    return folder


def member_probs(right, strength, seed):
    """OOF probabilities: `strength` on the true class for rows in `right`, on a wrong class elsewhere."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=len(TRAIN_IDS)) * (1 - strength)
    for row, label in enumerate(TRUE):
        column = VOCAB.index(label) if row in right else (VOCAB.index(label) + 1) % 3
        probs[row, column] += strength
    return probs


def make_member(folder, probs, folds=FOLDS, ids=TRAIN_IDS, true=TRUE):
    """A K-fold member folder as paddy/oof.py assembles it (no fold subfolders needed to read it)."""
    oof.write_oof(oof.oof_probs_path(folder), run_folder.Probs(image_ids=ids, probs=probs, vocab=VOCAB, true=true,
                                                               folds=folds))
    test = np.random.default_rng(len(str(folder))).dirichlet(np.ones(3), size=len(TEST_IDS))
    run_folder.write_probs(run_folder.test_probs_path(folder), TEST_IDS, test, VOCAB)
    (folder / run_folder.VOCAB).write_text(json.dumps({"label": list(VOCAB)}))
    (folder / run_folder.CONFIG).write_text(json.dumps({"arch": "resnet10t", "folds": 3}))
    (folder / run_folder.RESULT).write_text(json.dumps({"folds": 3, "epochs": 1}))
    return folder


@pytest.fixture
def members(tmp_path):
    data = make_data(tmp_path / "data")
    strong = make_member(tmp_path / "runs" / "strong", member_probs(set(range(24)), 0.7, 1))  # right on 24 of 30
    weak = make_member(tmp_path / "runs" / "weak", member_probs(set(range(10, 30)), 0.5, 2))  # right on 20
    return data, strong, weak


def ensemble(capsys, runs, data, out, *extra):
    code = main(["ensemble", *map(str, runs), "--data", str(data), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("fit", ["caruana", "hill"])
def test_fitted_weights_nested_cv_and_the_log(members, tmp_path, capsys, fit):
    data, strong, weak = members
    code, out, err = ensemble(capsys, [strong, weak], data, tmp_path / "subs" / "x.csv", "--fit", fit)
    assert code == 0, err
    for words in ("strong", "weak", "EQUAL WEIGHTS", f"FITTED {fit}/logloss (nested)", "over equal weights",
                  "over the best member (strong)", "80.00%", "66.67%"):
        assert words in out
    row = read_log(tmp_path / "subs" / "log.csv").iloc[0]
    assert row["fit"] == f"{fit}/logloss" and 0 < row["cv_accuracy"] <= 1 and row["cv_std"] >= 0
    assert row["valid_accuracy"] == row["cv_accuracy"] and row["best_member_accuracy"] == pytest.approx(0.8)
    weights = [float(w) for w in row["weights"].split(",")]
    assert weights[0] > weights[1] and sum(weights) == pytest.approx(1.0)


def test_equal_weights_by_default_still_cross_validate(members, tmp_path, capsys):
    data, strong, weak = members
    code, out, err = ensemble(capsys, [strong, weak], data, tmp_path / "x.csv")
    assert code == 0, err
    assert "FITTED equal/logloss (nested)" in out
    row = read_log(tmp_path / "log.csv").iloc[0]
    assert row["weights"] == "0.5,0.5" and row["fit"] == "equal/logloss"


def test_an_ensemble_of_one_member_is_that_member(members, tmp_path, capsys):
    data, strong, _ = members
    code, out, err = ensemble(capsys, [strong], data, tmp_path / "x.csv", "--fit", "caruana", "--metric", "accuracy")
    assert code == 0, err
    row = read_log(tmp_path / "log.csv").iloc[0]
    assert row["weights"] == "1" and row["cv_accuracy"] == pytest.approx(0.8)
    test = run_folder.read_probs(run_folder.test_probs_path(strong))
    labels = pd.read_csv(tmp_path / "x.csv", dtype=str).set_index("image_id")["label"]
    assert [labels[i] for i in test.image_ids] == [VOCAB[j] for j in test.probs.argmax(axis=1)]


def _other_folds(tmp, runs):
    make_member(tmp / "runs" / "other", member_probs(set(range(30)), 0.6, 3), folds=tuple((i + 1) % 3 for i in
                                                                                             range(30)))
    runs[1] = tmp / "runs" / "other"


def _missing_rows(tmp, runs):
    runs[1] = make_member(tmp / "runs" / "short", member_probs(set(range(30)), 0.6, 3)[:29], folds=FOLDS[:29],
                          ids=TRAIN_IDS[:29], true=TRUE[:29])


def _unknown_rows(tmp, runs):
    make_data(tmp / "data", train_ids=TRAIN_IDS[:29])


def _nan_oof(tmp, runs):
    path = oof.oof_probs_path(runs[1])
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[3, "hispa"] = np.nan
    frame.to_csv(path, index=False)


def _duplicated_oof(tmp, runs):
    path = oof.oof_probs_path(runs[1])
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[3, "image_id"] = frame.loc[4, "image_id"]
    frame.to_csv(path, index=False)


def _single_split_run(tmp, runs):
    oof.oof_probs_path(runs[1]).rename(run_folder.valid_probs_path(runs[1]))  # now an ordinary run


@pytest.mark.parametrize("damage, extra, words", [
    (_other_folds, [], "other folds"),
    (_missing_rows, [], "have no out-of-fold row"),
    (_unknown_rows, [], "not in train.csv"),
    (_nan_oof, [], "NaN"),
    (_duplicated_oof, [], "more than once"),
    (_single_split_run, ["--fit", "hill"], "needs K-fold members"),
    (None, ["--fit", "caruana", "--weights", "1,2"], "give one of the two"),
])
def test_bad_input_one_line_exit_2_nothing_written(members, tmp_path, capsys, damage, extra, words):
    data, strong, weak = members
    runs = [strong, weak]
    if damage:
        damage(tmp_path, runs)
    code, out, err = ensemble(capsys, runs, data, tmp_path / "subs" / "x.csv", *extra)
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "subs").exists()
