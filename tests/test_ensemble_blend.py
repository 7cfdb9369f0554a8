"""The ensembler: pure functions on hand-made arrays, then `paddy ensemble` on hand-made run folders."""

import json

import numpy as np
import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core import run_folder
from paddy.core.config import parse_weights
from paddy.core.errors import ConfigError, DataError
from paddy.ensemble.blend import align, common_ids, ensemble_accuracy, weighted_mean
from paddy.ensemble.log import read_log

VOCAB = ("blast", "hispa", "normal")
TEST_IDS = tuple(f"{200001 + i}.jpg" for i in range(6))
VALID_IDS = tuple(f"{100000 + i}.jpg" for i in range(8))
VALID_TRUE = ("blast", "hispa", "normal", "blast", "hispa", "normal", "blast", "hispa")


def make_data(folder, ids=TEST_IDS):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": list(ids), "label": [""] * len(ids)}).to_csv(folder / "sample_submission.csv",
                                                                            index=False)
    return folder


def make_run(folder, test_probs, valid_probs, vocab=VOCAB, test_ids=TEST_IDS, valid_ids=VALID_IDS,
             valid_true=VALID_TRUE, config=None, targets=("label",)):
    """A run folder in the run_folder contract, written with its own writer."""
    folder.mkdir(parents=True)
    run_folder.write_probs(run_folder.test_probs_path(folder), test_ids, test_probs, vocab)
    run_folder.write_probs(run_folder.valid_probs_path(folder), valid_ids, valid_probs, vocab, true=valid_true)
    vocabs = {"label": list(vocab)}
    if "variety" in targets:
        vocabs["variety"] = ["ADT45", "Zonal"]
        run_folder.write_probs(run_folder.test_probs_path(folder, "variety"), test_ids,
                               np.full((len(test_ids), 2), 0.5), ("ADT45", "Zonal"))
    (folder / run_folder.VOCAB).write_text(json.dumps(vocabs))
    config = {"arch": "resnet10t", "size": [64, 64], "epochs": 1, "targets": list(targets), "tta": "flip",
              **(config or {})}
    (folder / run_folder.CONFIG).write_text(json.dumps(config))
    (folder / run_folder.RESULT).write_text("{}")
    return folder


def random_probs(n, seed, k=len(VOCAB)):
    rng = np.random.default_rng(seed)
    p = rng.random((n, k)) + 0.01
    return p / p.sum(axis=1, keepdims=True)


def one_hot(labels, vocab=VOCAB, strength=0.8):
    p = np.full((len(labels), len(vocab)), (1 - strength) / (len(vocab) - 1))
    for row, label in enumerate(labels):
        p[row, vocab.index(label)] = strength
    return p


def ensemble(capsys, runs, data, out, *extra):
    code = main(["ensemble", *map(str, runs), "--data", str(data), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def two_runs(tmp_path):
    data = make_data(tmp_path / "data")
    good = one_hot(VALID_TRUE, strength=0.9)  # surer than `half`, so the ensemble follows it where they differ
    half = one_hot(VALID_TRUE[:4] + ("normal", "blast", "hispa", "normal"))  # wrong on the last four
    run_a = make_run(tmp_path / "runs" / "a", random_probs(6, 1), good, config={"arch": "resnet10t"})
    run_b = make_run(tmp_path / "runs" / "b", random_probs(6, 2), half, targets=("label", "variety"),
                     config={"arch": "convnext_atto", "finetune": True, "lr": 0.002, "pretrained": False, "bs": 32,
                             "seed": 7})
    (run_b / run_folder.RESULT).write_text(json.dumps({"epochs": 2}))  # fine_tune: 1 frozen + 1 unfrozen epoch
    return data, run_a, run_b


# Pure functions on hand-made arrays.

def test_weighted_mean_normalises_weights():
    a, b = np.array([[0.7, 0.3]]), np.array([[0.4, 0.6]])
    np.testing.assert_allclose(weighted_mean([a, b]), [[0.55, 0.45]])
    np.testing.assert_allclose(weighted_mean([a, b], "1,3"), [[0.475, 0.525]])
    np.testing.assert_allclose(weighted_mean([a, b], (2, 6)), [[0.475, 0.525]])
    np.testing.assert_allclose(weighted_mean([a, b], (0, 1)), b)


@pytest.mark.parametrize("weights, words", [
    ("1", "1 weight"), ("1,2,3", "3 weight"), ("0,0", "not all zero"), ("1,-1", ">= 0"), ("1,nan", "finite"),
    ("a,b", "numbers"),
])
def test_parse_weights_refuses(weights, words):
    with pytest.raises(ConfigError, match=words):
        parse_weights(weights, 2, what="weight", per="run")


def test_weighted_mean_refuses_bad_arrays():
    with pytest.raises(DataError, match="shape"):
        weighted_mean([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(DataError, match="finite"):
        weighted_mean([np.array([[np.nan, 1.0]])])


def test_align_reorders_rows_and_true_classes():
    probs = run_folder.Probs(image_ids=("b", "a", "c"), probs=np.array([[1.0, 0], [0, 1.0], [0.5, 0.5]]),
                             vocab=("x", "y"), true=("x", "y", "x"))
    aligned = align(probs, ("a", "b"))
    np.testing.assert_array_equal(aligned.probs, [[0, 1.0], [1.0, 0]])
    assert aligned.true == ("y", "x") and aligned.image_ids == ("a", "b")
    with pytest.raises(DataError, match="1 image id"):
        align(probs, ("a", "z"))


def test_ensemble_accuracy_only_on_images_every_member_held_out():
    vocab = ("x", "y")
    first = run_folder.Probs(("1", "2", "3"), np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), vocab, ("x", "y", "y"))
    second = run_folder.Probs(("3", "2", "4"), np.array([[0.3, 0.7], [0.1, 0.9], [0.5, 0.5]]), vocab, ("y", "y", "x"))
    assert common_ids([first, second]) == ("2", "3")
    scores = ensemble_accuracy([first, second])
    assert scores.n_common == 2 and scores.members == (0.5, 1.0) and scores.ensemble == 1.0
    assert ensemble_accuracy([first, second], (1, 0)).ensemble == 0.5


# `paddy ensemble` on hand-made run folders.

def test_one_run_equals_its_argmax(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    probs = random_probs(6, 7)
    run = make_run(tmp_path / "run", probs, one_hot(VALID_TRUE))
    code, out, err = ensemble(capsys, [run], data, tmp_path / "sub" / "one.csv")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "sub" / "one.csv", dtype=str)
    assert list(frame["image_id"]) == list(TEST_IDS)
    assert list(frame["label"]) == [VOCAB[i] for i in probs.argmax(axis=1)]
    assert "100.00%" in out and "one.csv" in out


def test_weights_change_the_outcome(tmp_path, capsys):
    data = make_data(tmp_path / "data", ids=("200001.jpg",))
    valid = one_hot(VALID_TRUE)
    run_a = make_run(tmp_path / "a", [[0.7, 0.3, 0.0]], valid, test_ids=("200001.jpg",))
    run_b = make_run(tmp_path / "b", [[0.4, 0.6, 0.0]], valid, test_ids=("200001.jpg",))
    assert ensemble(capsys, [run_a, run_b], data, tmp_path / "equal.csv")[0] == 0
    assert ensemble(capsys, [run_a, run_b], data, tmp_path / "b3.csv", "--weights", "1,3")[0] == 0
    assert pd.read_csv(tmp_path / "equal.csv")["label"].tolist() == ["blast"]  # 0.55 vs 0.45
    assert pd.read_csv(tmp_path / "b3.csv")["label"].tolist() == ["hispa"]  # 0.475 vs 0.525
    assert read_log(tmp_path / "log.csv")["weights"].tolist() == ["1,1", "1,3"]


def test_shuffled_rows_and_columns_give_the_same_submission(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    test, valid = random_probs(6, 3), one_hot(VALID_TRUE)
    plain = make_run(tmp_path / "plain", test, valid)
    rows, cols = np.random.default_rng(0).permutation(6), [2, 0, 1]
    vrows = np.random.default_rng(1).permutation(8)
    shuffled = make_run(tmp_path / "shuffled", test[rows][:, cols], valid[vrows][:, cols],
                        vocab=tuple(VOCAB[c] for c in cols), test_ids=tuple(TEST_IDS[r] for r in rows),
                        valid_ids=tuple(VALID_IDS[r] for r in vrows), valid_true=tuple(VALID_TRUE[r] for r in vrows))
    assert ensemble(capsys, [plain], data, tmp_path / "plain.csv")[0] == 0
    assert ensemble(capsys, [shuffled], data, tmp_path / "shuffled.csv")[0] == 0
    assert (tmp_path / "plain.csv").read_bytes() == (tmp_path / "shuffled.csv").read_bytes()
    # Mixed in one ensemble, the shuffled copy votes exactly like the plain run.
    assert ensemble(capsys, [plain, shuffled], data, tmp_path / "both.csv")[0] == 0
    assert (tmp_path / "both.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()


def test_two_runs_score_table_and_log_row(two_runs, tmp_path, capsys):
    data, run_a, run_b = two_runs
    code, out, err = ensemble(capsys, [run_a, run_b], data, tmp_path / "subs" / "ab.csv", "-m", "two archs")
    assert code == 0, err
    assert "100.00%" in out and "50.00%" in out and "ENSEMBLE" in out and "8 images every member held out" in out
    log = read_log(tmp_path / "subs" / "log.csv")
    assert len(log) == 1
    row = log.iloc[0]
    assert row["file"].endswith("ab.csv") and row["message"] == "two archs" and row["event"] == "written"
    assert row["members"] == ("a(arch=resnet10t size=64x64 epochs=1 targets=label tta=flip); "
                              "b(arch=convnext_atto size=64x64 epochs=2 lr=0.002 finetune=True pretrained=False bs=32 "
                              "targets=label+variety tta=flip seed=7)")
    assert row["n_valid"] == "8" and row["valid_accuracy"] == row["best_member_accuracy"] == 1.0


def test_shared_held_out_count_when_splits_differ(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    run_a = make_run(tmp_path / "a", random_probs(6, 1), one_hot(VALID_TRUE))
    other_ids = VALID_IDS[:5] + ("100100.jpg", "100101.jpg", "100102.jpg")
    run_b = make_run(tmp_path / "b", random_probs(6, 2), one_hot(VALID_TRUE), valid_ids=other_ids)
    code, out, err = ensemble(capsys, [run_a, run_b], data, tmp_path / "ab.csv")
    assert code == 0, err
    assert "on 5 images every member held out" in out
    assert read_log(tmp_path / "log.csv").loc[0, "n_valid"] == "5"


def test_out_folder_gets_a_time_stamped_name_and_no_overwrite(two_runs, tmp_path, capsys):
    data, run_a, _ = two_runs
    (tmp_path / "subs").mkdir()
    assert ensemble(capsys, [run_a], data, tmp_path / "subs")[0] == 0
    written = [p.name for p in (tmp_path / "subs").glob("ensemble-*.csv")]
    assert len(written) == 1
    code, _, err = ensemble(capsys, [run_a], data, tmp_path / "subs" / written[0])
    assert code == 2 and "exists" in err


def test_out_ending_in_a_slash_is_a_new_folder(two_runs, tmp_path, capsys):
    # `--out submissions/` before the folder exists: the help promises a time-stamped name inside it.
    data, run_a, _ = two_runs
    assert ensemble(capsys, [run_a], data, f"{tmp_path / 'new'}/")[0] == 0
    assert len(list((tmp_path / "new").glob("ensemble-*.csv"))) == 1


def _no_test_probs(tmp, runs):
    run_folder.test_probs_path(runs[1]).unlink()


def _other_vocab(tmp, runs):
    other = ("blast", "hispa", "tungro")
    runs[1] = make_run(tmp / "runs" / "tungro", random_probs(6, 5), one_hot(VALID_TRUE[:2] * 4, vocab=other),
                       vocab=other, valid_true=VALID_TRUE[:2] * 4)


def _other_ids(tmp, runs):
    run_folder.write_probs(run_folder.test_probs_path(runs[1]), TEST_IDS[:5] + ("200099.jpg",),
                           random_probs(6, 5), VOCAB)


def _nan_probs(tmp, runs):
    path = run_folder.test_probs_path(runs[1])
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[2, "hispa"] = np.nan
    frame.to_csv(path, index=False)


def _negative_probs(tmp, runs):
    path = run_folder.valid_probs_path(runs[0])
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[0, "blast"] = -0.1
    frame.to_csv(path, index=False)


def _sample_with_other_ids(tmp, runs):
    make_data(tmp / "data", ids=TEST_IDS[:5] + ("209999.jpg",))


def _unreadable_log(tmp, runs):
    (tmp / "subs" / "log.csv").write_bytes(b"\xff\xfe\x00broken")


def _same_run_twice(tmp, runs):
    runs[1] = runs[0].parent / ".." / runs[0].parent.name / runs[0].name  # another spelling of the same folder


def _not_a_run(tmp, runs):
    runs[1] = tmp / "no-such-run"


def _unfinished_run(tmp, runs):
    (runs[1] / run_folder.RESULT).unlink()  # probabilities written, result.json not yet: the run is not complete


def _banana(tmp, runs):
    path = run_folder.test_probs_path(runs[1])
    frame = pd.read_csv(path, dtype=str)
    frame.loc[3, "hispa"] = "banana"
    frame.to_csv(path, index=False)


def _truncated_result(tmp, runs):
    path = runs[1] / run_folder.RESULT
    path.write_text(json.dumps({"epochs": 2, "last_epoch": {"train_loss": 0.5}})[:17])


def _doubled_probs(tmp, runs):
    path = run_folder.valid_probs_path(runs[0])
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame[list(VOCAB)] *= 2  # every value doubled: each row sums to 2
    frame.to_csv(path, index=False)


def _nan_losses(tmp, runs):
    # What a run that trained on nothing (drop_last, bs > the training split) writes.
    (runs[1] / run_folder.RESULT).write_text('{"epochs": 1, "last_epoch": {"train_loss": NaN, "valid_loss": 2.3}}')


@pytest.mark.parametrize("damage, extra, words", [
    (_banana, [], "test_probs_label.csv row 4 (image_id 200004.jpg): hispa is 'banana'"),
    (_truncated_result, [], "result.json is not valid JSON"),
    (_doubled_probs, [], "valid_probs_label.csv row 1 (image_id 100000.jpg): probabilities sum to 2"),
    (_nan_losses, [], "train_loss is not a finite number"),
    (_no_test_probs, [], "test_probs_label.csv is missing"),
    (_other_vocab, [], "disagree on the label vocab"),
    (_other_ids, [], "different test image ids"),
    (_nan_probs, [], "NaN"),
    (_negative_probs, [], "negative"),
    (_sample_with_other_ids, [], "disagree on image ids"),
    (_not_a_run, [], "not a folder"),
    (_same_run_twice, [], "more than once"),
    (_unfinished_run, [], "unfinished"),
    (_unreadable_log, [], "not a readable submissions log"),
    (None, ["--weights", "1"], "1 weight"),
    (None, ["--weights", "1,2,3"], "3 weight"),
    (None, ["--weights", "0,0"], "not all zero"),
    (None, ["--weights", "1,-2"], ">= 0"),
])
def test_bad_input_one_line_exit_2_nothing_written(two_runs, tmp_path, capsys, damage, extra, words):
    data, run_a, run_b = two_runs
    subs = tmp_path / "subs"
    assert ensemble(capsys, [run_a, run_b], data, subs / "first.csv")[0] == 0
    runs = [run_a, run_b]
    if damage:
        damage(tmp_path, runs)
    log_before = (subs / "log.csv").read_bytes()
    code, out, err = ensemble(capsys, runs, data, subs / "second.csv", *extra)
    assert code == 2
    assert words in err and err.count("\n") == 1 and err.startswith("paddy ensemble: error:")
    assert sorted(p.name for p in subs.iterdir()) == ["first.csv", "log.csv"]  # no CSV, no temp file
    assert (subs / "log.csv").read_bytes() == log_before  # nothing appended


def test_log_write_failure_leaves_no_csv(two_runs, tmp_path):
    from paddy.ensemble.blend import ensemble_runs

    data, run_a, _ = two_runs
    (tmp_path / "log-is-a-folder").mkdir()  # readable as an empty log, but appending to it fails
    with pytest.raises(OSError):
        ensemble_runs([run_a], data, tmp_path / "x.csv", log=tmp_path / "log-is-a-folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "log-is-a-folder", "runs"]  # no CSV, no temp file


def test_ensemble_of_complementary_members_beats_the_best(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    runs = []
    for k in range(3):  # each member is wrong on a different pair of images, the majority is always right
        labels = list(VALID_TRUE)
        for row in (2 * k, 2 * k + 1):
            labels[row] = VOCAB[(VOCAB.index(labels[row]) + 1) % 3]
        runs.append(make_run(tmp_path / f"m{k}", random_probs(6, k), one_hot(labels)))
    log = tmp_path / "elsewhere" / "history.csv"
    code, out, err = ensemble(capsys, runs, data, tmp_path / "abc.csv", "--log", str(log))
    assert code == 0, err
    assert "ensemble beats its best member (m0) by 25.00 points on 8 images" in out
    assert read_log(log).loc[0, "valid_accuracy"] == 1.0 and not (tmp_path / "log.csv").exists()


def test_data_folder_is_required_outside_kaggle(two_runs, tmp_path):
    from paddy.ensemble.blend import ensemble_runs

    _, run_a, _ = two_runs
    with pytest.raises(DataError, match="no data folder given"):
        ensemble_runs([run_a], None, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_disjoint_validation_sets_cannot_be_scored_but_still_write(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    run_a = make_run(tmp_path / "a", random_probs(6, 1), one_hot(VALID_TRUE))
    other_ids = tuple(f"{100500 + i}.jpg" for i in range(8))
    run_b = make_run(tmp_path / "b", random_probs(6, 2), one_hot(VALID_TRUE), valid_ids=other_ids)
    code, out, err = ensemble(capsys, [run_a, run_b], data, tmp_path / "ab.csv")
    assert code == 0, err
    assert "no image was held out by every member" in out and "acc on shared 0" in out
    log = read_log(tmp_path / "log.csv")
    assert log["valid_accuracy"].isna().all() and log.loc[0, "n_valid"] == "0"


def test_a_second_ensemble_into_a_held_csv_is_refused(two_runs, tmp_path, capsys):
    from paddy.core import lock

    data, run_a, _ = two_runs
    with lock.hold(tmp_path / "subs" / "x.csv"):
        code, out, err = ensemble(capsys, [run_a], data, tmp_path / "subs" / "x.csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and "is in use by another paddy process" in err
    assert not (tmp_path / "subs").exists()  # made for the lock, removed with it: nothing written


def test_temps_a_killed_ensemble_left_go_with_the_next_run_of_the_same_csv(two_runs, tmp_path, capsys):
    data, run_a, _ = two_runs
    subs = tmp_path / "subs"
    subs.mkdir()
    left = [subs / ".x.csv.k1ll3d_1.csv", subs / ".log.csv.k1ll3d_2.csv"]  # the CSV's and the log's
    other = subs / ".y.csv.0th3r_99.csv"  # another output's: maybe a live run's, kept
    for path in [*left, other]:
        path.write_text("image_id,label\n")
    assert ensemble(capsys, [run_a], data, subs / "x.csv")[0] == 0
    assert sorted(p.name for p in subs.iterdir()) == [other.name, "log.csv", "x.csv"]


def test_log_competition_comes_from_the_data_never_a_hard_coded_slug(two_runs, tmp_path, capsys):
    from paddy.data.marker import write_competition

    data, run_a, _ = two_runs
    assert ensemble(capsys, [run_a], data, tmp_path / "unknown.csv")[0] == 0  # a folder with no marker
    write_competition(data, "plant-pathology-2021-fgvc8")
    assert ensemble(capsys, [run_a], data, tmp_path / "marked.csv")[0] == 0
    assert ensemble(capsys, [run_a], data, tmp_path / "named.csv", "--competition", "titanic")[0] == 0
    log = read_log(tmp_path / "log.csv")
    assert log["competition"].tolist() == ["", "plant-pathology-2021-fgvc8", "titanic"]
