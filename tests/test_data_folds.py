"""Folds: stratified, seeded, order-free K-fold assignment, saved once per runs folder."""

import numpy as np
import pandas as pd
import pytest

from paddy.core.errors import ConfigError, DataError
from paddy.data.folds import (
    FOLDS_CSV,
    FOLDS_JSON,
    assign_folds,
    build_folds,
    check_fold,
    check_k,
    ensure_folds,
    fold_split,
    read_folds,
    train_digest,
)


def make_items(seed=0, n=300):
    """Items with unbalanced labels and varieties, like the competition's."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    varieties = rng.choice(["x", "y", "z"], size=n, p=[0.7, 0.2, 0.1])
    return pd.DataFrame({"image_id": [f"{100000 + i}.jpg" for i in range(n)], "label": labels, "variety": varieties})


def test_every_fold_holds_each_label_and_variety_in_proportion():
    items = make_items()
    folds = assign_folds(items, 5, seed=1)
    assert set(folds.tolist()) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for column in ("label", "variety"):
        for value in items[column].unique():
            counts = np.bincount(folds[(items[column] == value).to_numpy()], minlength=5)
            assert counts.max() - counts.min() <= (1 if column == "label" else 3), (column, value, counts)


def test_each_label_variety_cell_splits_within_one_image():
    items = make_items()
    folds = assign_folds(items, 4, seed=3)
    for _, cell in items.groupby(["label", "variety"]):
        counts = np.bincount(folds[cell.index.to_numpy()], minlength=4)
        assert counts.max() - counts.min() <= 1


def test_assignment_is_seeded_and_ignores_row_order():
    items = make_items()
    shuffled = items.sample(frac=1.0, random_state=7).reset_index(drop=True)
    a = dict(zip(items["image_id"], assign_folds(items, 5, seed=1)))
    b = dict(zip(shuffled["image_id"], assign_folds(shuffled, 5, seed=1)))
    c = dict(zip(items["image_id"], assign_folds(items, 5, seed=2)))
    assert a == b
    assert a != c


def test_label_only_items_are_stratified_by_label():
    items = make_items().drop(columns="variety")
    folds = assign_folds(items, 3, seed=0)
    for label in "abc":
        counts = np.bincount(folds[(items["label"] == label).to_numpy()], minlength=3)
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("k", [1, 0, -3, 2.5, True, "3"])
def test_bad_k_is_refused(k):
    with pytest.raises(ConfigError):
        check_k(k, {"a": 10, "b": 5})


def test_k_above_the_smallest_class_is_refused():
    assert check_k(5, {"a": 10, "b": 5}) == 5
    with pytest.raises(ConfigError, match="smallest class"):
        check_k(6, {"a": 10, "b": 5})


@pytest.mark.parametrize("fold", [-1, 3, 1.0, None])
def test_fold_out_of_range_is_refused(fold):
    with pytest.raises(ConfigError):
        check_fold(fold, 3)


def test_digest_ignores_order_but_not_content():
    items = make_items()
    assert train_digest(items) == train_digest(items.iloc[::-1])
    changed = items.copy()
    changed.loc[0, "label"] = "c" if changed.loc[0, "label"] != "c" else "a"
    assert train_digest(items) != train_digest(changed)


def test_folds_are_written_once_and_read_back(tmp_path):
    items = make_items()
    folds = ensure_folds(tmp_path, items, 5, seed=1)
    assert (tmp_path / FOLDS_CSV).is_file() and (tmp_path / FOLDS_JSON).is_file()
    assert list(pd.read_csv(tmp_path / FOLDS_CSV).columns) == ["image_id", "fold"]
    again = ensure_folds(tmp_path, items.iloc[::-1], 5, seed=1)
    assert again.digest == folds.digest == build_folds(items, 5, 1).digest
    assert again.fold_of() == folds.fold_of()


def test_another_train_csv_in_the_same_runs_folder_is_refused(tmp_path):
    ensure_folds(tmp_path, make_items(seed=0), 5, seed=1)
    with pytest.raises(DataError, match="another train.csv"):
        ensure_folds(tmp_path, make_items(seed=9), 5, seed=1)


def test_other_k_or_seed_in_the_same_runs_folder_is_refused(tmp_path):
    items = make_items()
    ensure_folds(tmp_path, items, 5, seed=1)
    for k, seed in ((4, 1), (5, 2)):
        with pytest.raises(ConfigError, match="5 folds with seed 1"):
            ensure_folds(tmp_path, items, k, seed)


def test_an_edited_folds_csv_is_refused(tmp_path):
    ensure_folds(tmp_path, make_items(), 5, seed=1)
    frame = pd.read_csv(tmp_path / FOLDS_CSV, dtype={"image_id": str})
    frame.loc[0, "fold"] = (frame.loc[0, "fold"] + 1) % 5
    frame.to_csv(tmp_path / FOLDS_CSV, index=False)
    with pytest.raises(DataError, match="changed"):
        read_folds(tmp_path)


def test_folds_csv_without_folds_json_is_made_again(tmp_path):
    items = make_items()
    (tmp_path / FOLDS_CSV).write_text("image_id,fold\nhalf-written\n")
    assert read_folds(tmp_path) is None
    assert ensure_folds(tmp_path, items, 3, seed=0).k == 3
    assert read_folds(tmp_path).k == 3


def test_duplicated_ids_are_refused():
    items = make_items(n=20)
    items.loc[1, "image_id"] = items.loc[0, "image_id"]
    with pytest.raises(DataError, match="more than once"):
        assign_folds(items, 2, seed=0)


def test_fold_splits_partition_the_images():
    items = make_items()
    folds = build_folds(items, 3, seed=0)
    splits = [fold_split(folds, f) for f in range(3)]
    assert sum(len(s.valid_ids) for s in splits) == len(items)
    assert set().union(*(s.valid_ids for s in splits)) == set(items["image_id"])
    assert splits[1].result_keys() == {"fold": 1, "folds": 3, "folds_digest": folds.digest, "n_train": len(items)}
    with pytest.raises(ConfigError):
        fold_split(folds, 3)
