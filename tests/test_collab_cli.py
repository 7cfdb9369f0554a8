"""`paddy collab` end to end on tiny files: loaders, outputs, recommend/similar, and every bad input (exit 2)."""

import json

import numpy as np
import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.collab.data import load_ml100k, load_ml_latest_small, load_ratings, split_frames


def write_ratings(path, n_users=30, n_items=20, seed=0, columns=("uid", "iid", "stars")):
    """A small ratings CSV (about half the pairs rated, 1..5 stars)."""
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.5]
    frame = pd.DataFrame(pairs, columns=columns[:2])
    frame[columns[2]] = rng.integers(1, 6, len(frame)).astype(float)
    frame.to_csv(path, index=False)
    return path


def write_ml100k(folder, n=200, seed=0):
    """A tiny folder in MovieLens 100k's format: u.data (tabs), u.item (pipes, latin-1), u1.base and u1.test."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    rows = [f"{rng.integers(1, 21)}\t{rng.integers(1, 16)}\t{rng.integers(1, 6)}\t{880000000 + k}" for k in range(n)]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    (folder / "u1.base").write_text("\n".join(rows[:150]) + "\n")
    (folder / "u1.test").write_text("\n".join(rows[150:]) + "\n")
    items = [f"{i}|Film {i} (199{i % 10})|01-Jan-1995||http://x|0|1" for i in range(1, 16)]
    items[0] = "1|Amélie (2001)|01-Jan-2001||http://x|0|1"
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    return folder


def run(capsys, *argv):
    """Run the CLI; returns (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ml100k_loader_reads_its_formats_and_canonical_split(tmp_path):
    ratings = load_ml100k(write_ml100k(tmp_path / "ml-100k"))
    assert len(ratings.frame) == 200 and list(ratings.frame.columns) == ["user", "item", "rating"]
    assert ratings.title("1") == "Amélie (2001)"
    train, valid = split_frames(ratings, "u1")
    assert (len(train), len(valid)) == (150, 50)
    assert load_ratings(str(tmp_path / "ml-100k")).source == ratings.source


def test_ids_are_kept_as_written_so_007_and_7_are_two_users(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n007,A1,4\n7,A1,2\n007,0042,5\n7.0,0042,1\n")
    ratings = load_ratings(str(path))
    assert list(ratings.frame["user"]) == ["007", "7", "007", "7.0"]
    assert list(ratings.frame["item"]) == ["A1", "A1", "0042", "0042"]
    assert ratings.frame["rating"].tolist() == [4.0, 2.0, 5.0, 1.0]


def test_embedded_latest_small_ships_with_its_licence():
    ratings = load_ml_latest_small()
    assert len(ratings.frame) == 100836 and ratings.frame["user"].nunique() == 610
    assert len(ratings.titles) == 9742 and ratings.rating_range == (0.5, 5.0)
    from paddy.collab.data import embedded_path

    assert "MovieLens" in (embedded_path() / "README.txt").read_text()


def test_train_then_recommend_and_similar_from_the_saved_folder(tmp_path, capsys):
    data, out = write_ratings(tmp_path / "r.csv"), tmp_path / "out"
    code, text, err = run(capsys, "collab", "--data", str(data), "--epochs", "2", "--factors", "4", "--out",
                          str(out), "--quiet")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"model.pth", "metrics.json", "pca_items.png", "crosstab.csv"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid_rmse"] == pytest.approx(metrics["valid_mse"] ** 0.5) and metrics["seconds_per_epoch"] > 0
    assert "valid MSE" in text and "highest item biases" in text
    code, text, _ = run(capsys, "collab", "recommend", "--model", str(out), "--user", "3", "-n", "4")
    assert code == 0 and "known user" in text and len(text.strip().splitlines()) == 5
    code, text, _ = run(capsys, "collab", "recommend", "--model", str(out), "--user", "stranger", "-n", "2")
    assert code == 0 and "cold start" in text
    code, text, _ = run(capsys, "collab", "recommend", "--model", str(out), "--user", "new", "--rated", "1=5", "2=1")
    assert code == 0 and "fold-in of 2" in text and "[1]" not in text and "[2]" not in text
    code, _, err = run(capsys, "collab", "recommend", "--model", str(out), "--user", "new", "--rated", "1=99")
    assert code == 2 and "training data's scale" in err and len(err.strip().splitlines()) == 1
    code, text, _ = run(capsys, "collab", "similar", "--model", str(out), "--item", "7", "-n", "3", "--min-count", "1")
    assert code == 0 and "most similar to 7" in text and len(text.strip().splitlines()) == 4
    code, _, err = run(capsys, "collab", "similar", "--model", str(out), "--item", "77777")
    assert code == 2 and "no item titled '77777'" in err and len(err.strip().splitlines()) == 1


def test_nn_model_and_kfold_run(tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", 20, 12)
    code, text, err = run(capsys, "collab", "--data", str(data), "--model", "nn", "--epochs", "1", "--kfold", "2",
                          "--out", str(tmp_path / "nn"), "--quiet")
    assert code == 0, err
    metrics = json.loads((tmp_path / "nn" / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2
    # the printed line pairs the mean MSE with every held-out rating of every fold, not fold 1's alone
    n = len(pd.read_csv(data))
    assert metrics["valid"]["n"] == n == sum(fold["n"] for fold in metrics["folds"])
    assert metrics["valid"]["mse"] == pytest.approx(np.mean([fold["mse"] for fold in metrics["folds"]]))
    assert "users, fold 1's model and held-out ratings)" in text  # the top-N line says which fold it scores
    assert metrics["valid_rmse"] == pytest.approx(metrics["valid_mse"] ** 0.5)
    assert f" of {n} held-out ratings cold" in text


def test_one_factor_model_trains_and_plots_its_pca(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "collab", "--data", str(write_ratings(tmp_path / "r.csv", 12, 8)), "--factors", "1",
                       "--epochs", "1", "--out", str(out), "--quiet")
    assert code == 0, err
    assert (out / "pca_items.png").stat().st_size > 0


def test_default_y_range_is_scaled_to_the_whole_datas_range_not_the_training_split(tmp_path, capsys):
    from paddy.collab.data import random_split
    from paddy.collab.fitted import load_model

    data = write_ratings(tmp_path / "r.csv")
    frame = pd.read_csv(data)
    frame["stars"] = frame["stars"].clip(1, 4)
    frame.loc[random_split(len(frame))[1][0], "stars"] = 5.0  # the only 5 lands in the validation split
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    code, _, err = run(capsys, "collab", "--data", str(data), "--epochs", "1", "--out", str(out), "--quiet")
    assert code == 0, err
    assert load_model(out).shape["y_range"] == [0.0, 5.5]


def test_kfold_with_a_canonical_split_is_refused_not_ignored(tmp_path, capsys):
    code, _, err = run(capsys, "collab", "--data", str(write_ml100k(tmp_path / "ml")), "--split", "u1", "--kfold", "2",
                       "--epochs", "1", "--out", str(tmp_path / "out"), "--quiet")
    assert code == 2 and "two different splits" in err and not (tmp_path / "out").exists()


def test_crosstab_reads_the_data_given_before_or_after_the_action(tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", 6, 4)
    for argv in (["--data", str(data), "crosstab"], ["crosstab", "--data", str(data)]):
        code, text, err = run(capsys, "collab", *argv, "-n", "2", "--csv", str(tmp_path / "t.csv"))
        assert code == 0, err
        assert len(pd.read_csv(tmp_path / "t.csv", index_col=0)) == 2 and "Forrest" not in text


def test_crosstab_takes_column_names_like_training(tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", 6, 4, columns=("x", "y", "z"))
    pd.read_csv(data)[["z", "y", "x"]].to_csv(data, index=False)  # rating first: positional defaults would fail
    code, text, err = run(capsys, "collab", "crosstab", "--data", str(data), "--user-col", "x", "--item-col", "y",
                          "--rating-col", "z", "-n", "2")
    assert code == 0, err


def test_similar_never_lists_the_item_itself_when_n_exceeds_the_catalogue(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "collab", "--data", str(write_ratings(tmp_path / "r.csv", 12, 6)), "--epochs", "1", "--out",
               str(out), "--quiet")[0] == 0
    code, text, err = run(capsys, "collab", "similar", "--model", str(out), "--item", "3", "-n", "50",
                          "--min-count", "1")
    assert code == 0, err
    listed = [line.split()[-1] for line in text.strip().splitlines()[1:]]
    assert "3" not in listed and "inf" not in text and len(listed) == 5


def test_similar_suggests_close_titles(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, "collab", "--data", str(write_ml100k(tmp_path / "ml")), "--epochs", "1", "--out", str(out),
               "--quiet")[0] == 0
    code, _, err = run(capsys, "collab", "similar", "--model", str(out), "--item", "Amelie (2001)")
    assert code == 2 and "did you mean Amélie (2001)?" in err
    code, _, err = run(capsys, "collab", "similar", "--model", str(out), "--item", "Ameli")  # a typo, no year
    assert code == 2 and "did you mean Amélie (2001)" in err


BAD_FILES = {
    "misnamed column": ("user,movie,rating\n1,2,3\n", ["--item-col", "item"], "no column(s) ['item']"),
    "non-numeric rating": ("u,i,r\n1,2,3\n1,3,good\n", [], "'good' in data row 2 is not a number"),
    "empty file": ("", [], "is empty"),
    "header only": ("u,i,r\n", [], "has no ratings"),
    "outside y_range": ("u,i,r\n1,2,3\n2,2,9\n", ["--y-range", "0,5.5"], "widen --y-range"),
    "one column for two roles": ("movie,user,rating\n1,2,3\n2,2,4\n", ["--user-col", "user"],
                                 "'user' is both the user and the item column"),
    "diverging training": ("u,i,r\n1,2,3\n2,2,4\n1,3,5\n2,3,1\n", ["--wd", "1e300", "--valid-pct", "0.5"],
                           "training diverged"),
    "empty validation split": ("u,i,r\n1,2,3\n2,2,4\n", ["--valid-pct", "0.1"], "0 validation ratings"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    text, extra, message = BAD_FILES[case]
    (tmp_path / "bad.csv").write_text(text)
    code, _, err = run(capsys, "collab", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "out"), *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.parametrize("flag", [["--factors", "0"], ["--epochs", "-1"], ["--epochs", "two"]])
def test_non_positive_factors_or_epochs_are_usage_errors(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["collab", *flag, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_model_folder_and_foreign_output_folder(tmp_path, capsys):
    code, _, err = run(capsys, "collab", "recommend", "--model", str(tmp_path / "none"), "--user", "1")
    assert code == 2 and "train one first" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "collab", "--data", str(write_ratings(tmp_path / "r.csv")), "--out",
                       str(tmp_path / "mine"))
    assert code == 2 and "not a collab output folder" in err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_outside_a_terminal_the_log_gets_the_epoch_table_but_no_progress_bars(tmp_path, capsys):
    code, out, _ = run(capsys, "collab", "--data", str(write_ratings(tmp_path / "r.csv")), "--epochs", "2",
                       "--out", str(tmp_path / "out"))
    assert code == 0 and "train_loss" in out and "valid_loss" in out  # fastai's epoch table
    assert "Epoch 1/2 :" not in out and "%" not in out  # no per-batch bar updates (capsys is not a terminal)
    from fastprogress import fastprogress

    assert fastprogress.NO_BAR is False  # restored for whoever runs next in this process


@pytest.mark.parametrize(("flags", "wd"), [(["--recipe", "book"], 0.1), ([], 0.5), (["--wd-mode", "l2"], 1e-4),
                                           (["--wd-mode", "l2", "--wd", "0.5"], 0.5)])
def test_default_weight_decay_suits_the_mode(tmp_path, capsys, flags, wd):
    out = tmp_path / "out"
    code, _, err = run(capsys, "collab", "--data", str(write_ratings(tmp_path / "r.csv")), "--epochs", "1",
                       "--out", str(out), "--quiet", *flags)
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["config"]["wd"] == wd
