"""K-fold members: fold run folders assembled into out-of-fold and averaged test probabilities."""

import json

import numpy as np
import pytest

from paddy.core import atomic, run_folder
from paddy.core.errors import DataError
from paddy.core.oof import assemble_member, fold_dir, is_oof_member, read_oof

VOCAB = ("a", "b", "c")
TRAIN_IDS = [f"{100000 + i}.jpg" for i in range(9)]
TEST_IDS = ["200001.jpg", "200002.jpg"]


def fold_test_row(fold):
    """Fold `fold`'s test probabilities, one row."""
    return np.array([fold + 1.0, 1.0, 1.0]) / (fold + 3.0)


def write_fold(member, fold, k=3, digest="d1", complete=True, held=None, config=None, test_ids=TEST_IDS):
    """A hand-made fold run folder: images i with i % k == fold held out, probabilities from the fold index."""
    run = fold_dir(member, fold)
    held = [i for n, i in enumerate(TRAIN_IDS) if n % k == fold] if held is None else held
    rng = np.random.default_rng(fold)
    valid = rng.dirichlet(np.ones(3), size=len(held))
    truth = [VOCAB[int(i[-5]) % 3] for i in held]
    run_folder.write_probs(run_folder.valid_probs_path(run), held, valid, VOCAB, true=truth)
    test = np.tile(fold_test_row(fold), (len(test_ids), 1))
    run_folder.write_probs(run_folder.test_probs_path(run), test_ids, test, VOCAB)
    atomic.write_json(run / run_folder.VOCAB, {"label": list(VOCAB)})
    atomic.write_json(run / run_folder.CONFIG, {"arch": "resnet10t", "folds": k, "fold": fold, "run_name": "m",
                                                **(config or {})})
    if complete:
        atomic.write_json(run / run_folder.RESULT, {"fold": fold, "folds": k, "folds_digest": digest,
                                                    "n_train": len(TRAIN_IDS), "epochs": 2, "seconds": 1.0,
                                                    "valid_error_tta": {"label": 0.5}})
    return run, held, valid


def test_assembled_member_covers_every_image_once_with_its_fold(tmp_path):
    member = tmp_path / "m"
    folds = [write_fold(member, f) for f in range(3)]
    result = assemble_member([f[0] for f in folds], member)
    assert is_oof_member(member)
    oof = read_oof(member)
    assert sorted(oof.image_ids) == sorted(TRAIN_IDS)
    for run, held, valid in folds:
        fold = int(run.name.split("-")[1])
        rows = [oof.image_ids.index(i) for i in held]
        np.testing.assert_allclose(oof.probs[rows], valid)
        assert {oof.folds[r] for r in rows} == {fold}
    test = run_folder.read_probs(run_folder.test_probs_path(member))
    np.testing.assert_allclose(test.probs, np.tile(np.mean([fold_test_row(f) for f in range(3)], axis=0), (2, 1)))
    assert result["folds"] == 3 and result["n_oof"] == 9 and result["folds_digest"] == "d1"
    assert json.loads((member / run_folder.CONFIG).read_text()) == {"arch": "resnet10t", "folds": 3, "run_name": "m"}


def test_an_unfinished_fold_is_never_read(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, f, complete=f != 2)[0] for f in range(3)]
    with pytest.raises(DataError, match="unfinished"):
        assemble_member(runs, member)
    assert not is_oof_member(member) and not (member / "oof_probs_label.csv").exists()


def test_a_missing_fold_is_refused(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, f)[0] for f in range(2)]
    with pytest.raises(DataError, match="0..2"):
        assemble_member(runs, member)


def test_folds_from_another_assignment_are_refused(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, f, digest="d2" if f == 1 else "d1")[0] for f in range(3)]
    with pytest.raises(DataError, match="other folds"):
        assemble_member(runs, member)


def test_an_image_held_out_twice_is_refused(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, 0, held=TRAIN_IDS[:4])[0], write_fold(member, 1, held=TRAIN_IDS[3:6])[0],
            write_fold(member, 2, held=TRAIN_IDS[6:])[0]]
    with pytest.raises(DataError, match="more than one fold"):
        assemble_member(runs, member)


def test_folds_with_different_configs_are_refused(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, f, config={"lr": 0.1 if f else 0.2, "device": f"cuda:{f}"})[0] for f in range(3)]
    with pytest.raises(DataError, match=r"different configs \(lr\)"):
        assemble_member(runs, member)


def test_folds_that_predicted_other_test_images_are_refused(tmp_path):
    member = tmp_path / "m"
    runs = [write_fold(member, f, test_ids=TEST_IDS if f else ["200009.jpg", "200002.jpg"])[0] for f in range(3)]
    with pytest.raises(DataError, match="different test images"):
        assemble_member(runs, member)
