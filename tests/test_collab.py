"""Collaborative filtering: models on hand-made data, optimizer equivalence, planted low-rank recovery, metrics."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paddy.collab import evaluate, models
from paddy.collab.data import Ratings, crosstab, kfold_splits, random_split
from paddy.collab.recommend import fold_in, recommend
from paddy.collab.train import CollabConfig, default_y_range, encode, fit_collab, resolve_y_range
from paddy.core.errors import ConfigError
from paddy.core.runtime import torch_threads

X = torch.tensor([[1, 1], [1, 2], [2, 1], [2, 2]])


def set_rows(model, user_factors, item_factors, user_bias=None, item_bias=None):
    """Write hand-made rows 1.. into a model's tables (row 0 stays the unknown row)."""
    with torch.no_grad():
        for name, rows in (("user_factors", user_factors), ("item_factors", item_factors), ("user_bias", user_bias),
                           ("item_bias", item_bias)):
            if rows is not None:
                weight = models.table(model, name)
                weight[1:] = torch.tensor(rows, dtype=torch.float32).reshape(weight[1:].shape)
    return model


def test_dot_product_is_the_dot_of_the_rows():
    model = set_rows(models.DotProduct(3, 3, 2), [[1, 2], [3, -1]], [[0.5, 1], [2, 0]])
    assert torch.allclose(model(X), torch.tensor([2.5, 2.0, 0.5, 6.0]))


def test_bias_models_add_biases_and_squash_into_y_range():
    rows = ([[1, 2], [3, -1]], [[0.5, 1], [2, 0]], [[0.1], [-0.2]], [[1.0], [0.0]])
    plain = set_rows(models.DotProductBias(3, 3, 2), *rows)
    assert torch.allclose(plain(X), torch.tensor([3.6, 2.1, 1.3, 5.8]))
    scratch = set_rows(models.DotProductBiasScratch(3, 3, 2), *rows)
    assert torch.allclose(scratch(X), plain(X))
    squashed = set_rows(models.DotProductBias(3, 3, 2, y_range=(0, 5.5)), *rows)
    assert torch.allclose(squashed(X), torch.sigmoid(plain(X)) * 5.5)
    assert ((squashed(X) > 0) & (squashed(X) < 5.5)).all()


def test_collab_nn_uses_fastai_sizes_per_side_and_returns_one_rating_per_pair():
    model = models.CollabNN(944, 1665, y_range=(0, 5.5), layers=(100, 50))
    assert (model.user_factors.embedding_dim, model.item_factors.embedding_dim) == (74, 102)  # the book's sizes
    out = model(torch.tensor([[1, 5], [943, 1664], [0, 0]]))
    assert out.shape == (3,) and ((out > 0) & (out < 5.5)).all()


def test_fill_unknown_gives_row_zero_the_mean_of_trained_rows():
    model = models.fill_unknown(set_rows(models.DotProductBias(3, 3, 2), [[1, 2], [3, -2]], [[0, 1], [2, 0]],
                                         [[0.5], [1.5]], [[1], [3]]))
    assert torch.allclose(model.user_factors.weight[0], torch.tensor([2.0, 0.0]))
    assert float(model.item_bias.weight[0].detach()) == pytest.approx(2.0)


def test_encode_maps_unknown_ids_to_zero():
    assert encode(["b", "z", "a"], ["a", "b", "c"]).tolist() == [2, 0, 1]


def test_default_y_range_is_the_books_for_five_stars_and_given_ranges_must_contain_ratings():
    assert default_y_range(1.0, 5.0) == (0.0, 5.5)
    assert resolve_y_range(CollabConfig(y_range=()), (1, 5)) is None
    with pytest.raises(ConfigError, match="widen --y-range"):
        resolve_y_range(CollabConfig(y_range=(0.0, 5.0)), (0.5, 5.0))


@pytest.mark.parametrize("change", [{"factors": 0}, {"epochs": 0}, {"kind": "svd"}, {"lr": -1}, {"wd_mode": "x"},
                                    {"lr": math.inf}, {"wd": math.inf}, {"y_range": (0, math.inf)}])
def test_config_refuses_bad_values(change):
    with pytest.raises(ConfigError):
        CollabConfig(**change)


def test_book_l2_loss_equals_adam_with_doubled_weight_decay_in_the_gradient():
    torch.manual_seed(0)
    wd, p0 = 0.1, torch.randn(5, 3)
    grad = torch.randn(5, 3)
    book = torch.nn.Parameter(p0.clone())
    ((book * grad).sum() + wd * (book ** 2).sum()).backward()  # the book: loss + wd * sum(p**2)
    torch.optim.Adam([book], lr=0.01, betas=(0.9, 0.99), eps=1e-5).step()
    ours = torch.nn.Parameter(p0.clone())
    (ours * grad).sum().backward()
    torch.optim.Adam([ours], lr=0.01, betas=(0.9, 0.99), eps=1e-5, weight_decay=2 * wd).step()
    assert torch.allclose(book, ours, atol=1e-6)


def planted(n_users=60, n_items=40, rank=3, noise=0.1, seed=0):
    """A fully observed rank-`rank` rating matrix plus Gaussian noise, as a shuffled frame."""
    rng = np.random.default_rng(seed)
    ratings = rng.normal(size=(n_users, rank)) @ rng.normal(size=(n_items, rank)).T + 3
    ratings += rng.normal(scale=noise, size=ratings.shape)
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    frame = pd.DataFrame({"user": users.ravel().astype(str), "item": items.ravel().astype(str),
                          "rating": ratings.ravel().astype("float32")})
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


@pytest.fixture(scope="module")
def planted_fit():
    frame = planted()
    train, valid = frame.iloc[:1920].reset_index(drop=True), frame.iloc[1920:].reset_index(drop=True)
    config = CollabConfig(kind="bias", factors=3, epochs=10, lr=0.1, wd=1e-4, bs=64, y_range=(), seed=0)
    return fit_collab(train, valid, config, progress=False), train, valid


def test_planted_low_rank_matrix_is_recovered_to_its_noise_level(planted_fit):
    result, train, valid = planted_fit
    score = evaluate.evaluate_ratings(result.fitted, valid)
    spread = float(valid["rating"].std())
    assert score["rmse"] < 1.5 * 0.1 < spread / 10, (score, spread)  # noise is 0.1; the ratings' spread is ~1.7
    assert result.history[-1]["valid_loss"] == pytest.approx(score["mse"], rel=1e-4)


def test_fold_in_fits_a_new_users_vector_from_a_few_ratings(planted_fit):
    result, train, valid = planted_fit
    fitted = result.fitted
    user = train["user"].iloc[0]
    mine = pd.concat([train, valid])
    mine = mine[mine["user"] == user]
    items = [fitted.item_index(i) for i in mine["item"]]
    given, held = slice(0, 15), slice(15, None)
    model = fold_in(fitted, items[given], mine["rating"].to_numpy()[given].tolist())
    folded = evaluate.predict_index(model, np.zeros(len(items[held]), dtype=int), items[held])
    cold = evaluate.predict_index(fitted.model, np.zeros(len(items[held]), dtype=int), items[held])
    truth = mine["rating"].to_numpy()[held]
    assert evaluate.rmse(folded, truth) < 0.5 * evaluate.rmse(cold, truth)
    assert torch.equal(models.table(model, "item_factors"), models.table(fitted.model, "item_factors"))


def test_recommend_skips_seen_items_and_serves_an_unknown_user(planted_fit):
    fitted = planted_fit[0].fitted
    rows, how = recommend(fitted, "0", n=5)
    seen = {fitted.items[i - 1] for i in fitted.seen_by(fitted.user_index("0"))}
    assert len(rows) == 5 and not {item for item, _, _ in rows} & seen and how == "known user"
    scores = [score for _, _, score in rows]
    assert scores == sorted(scores, reverse=True)
    rows, how = recommend(fitted, "nobody", n=3)
    assert len(rows) == 3 and "cold start" in how


@pytest.mark.parametrize("kind", ["bias", "nn"])  # nn: Linear biases are fastai's no-decay params
def test_fused_optimizer_trains_exactly_like_fastais_adam(kind):
    frame = planted(20, 10, 2, seed=1)
    train, valid = frame.iloc[:160], frame.iloc[160:]
    runs = {}
    for opt in ("fused", "fastai"):
        for mode in ("decoupled", "l2"):
            config = CollabConfig(kind=kind, factors=2, epochs=2, bs=32, opt=opt, wd_mode=mode, wd=0.5, seed=3)
            runs[opt, mode] = fit_collab(train, valid, config, progress=False).history
    for mode in ("decoupled", "l2"):
        fused, fastai = runs["fused", mode], runs["fastai", mode]
        assert [r["valid_loss"] for r in fused] == pytest.approx([r["valid_loss"] for r in fastai], rel=1e-5)
    assert runs["fused", "decoupled"][-1]["valid_loss"] != pytest.approx(runs["fused", "l2"][-1]["valid_loss"])


def test_training_restores_the_thread_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_ranking_metrics_on_hand_made_lists():
    ranked, relevant = [5, 1, 7, 3], [1, 3, 9]
    assert evaluate.precision_at_k(ranked, relevant, 2) == 0.5
    assert evaluate.recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert evaluate.ndcg_at_k(ranked, relevant, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert evaluate.ndcg_at_k([1, 3, 9], relevant, 3) == pytest.approx(1.0)
    assert evaluate.mse([1, 2], [2, 4]) == 2.5 and evaluate.rmse([0], [3]) == 3


def test_splits_are_seeded_partitions():
    train, valid = random_split(100, 0.2, seed=1)
    assert len(valid) == 20 and not set(train) & set(valid)
    assert np.array_equal(random_split(100, 0.2, seed=1)[1], valid)
    folds = kfold_splits(103, 5, seed=0)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(103))


def test_crosstab_shows_top_users_by_top_items_with_titles():
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": ["x", "y", "x", "z", "x"],
                          "rating": [5.0, 3.0, 4.0, 1.0, 2.0]})
    table = crosstab(Ratings(frame, {"x": "X (2000)"}), n=2)
    assert list(table.index) == ["a", "b"] and list(table.columns)[0] == "X (2000)"
    assert table.loc["a", "X (2000)"] == 5.0 and table.loc["b", "X (2000)"] == 4.0


def test_fastai_collab_learner_converts_to_the_kits_model_with_the_same_predictions():
    frame = planted(20, 10, 2, seed=2)
    train, valid = frame.iloc[:160].reset_index(drop=True), frame.iloc[160:].reset_index(drop=True)
    config = CollabConfig(kind="fastai", factors=2, epochs=1, bs=32, seed=0)
    result = fit_collab(train, valid, config, progress=False)
    score = evaluate.evaluate_ratings(result.fitted, valid)
    assert score["cold"] == 0
    assert score["mse"] == pytest.approx(result.history[-1]["valid_loss"], rel=1e-4)



def test_fastai_model_treats_ids_seen_only_in_validation_as_cold_like_the_kits():
    # fastai's Categorify gives validation-only ids rows that training never moves; the converted model must not
    # count them as known: they are cold (index 0, the mean row), as in the kit's own models.
    from fastai.collab import EmbeddingDotBias
    from fastai.data.transforms import CategoryMap

    from paddy.collab.train import from_fastai

    torch.manual_seed(0)
    classes = {"user": CategoryMap(["a", "b", "c"], add_na=True), "item": CategoryMap(["x", "y", "z"], add_na=True)}
    source = EmbeddingDotBias(3, 4, 4, y_range=(0, 5.5))
    train = pd.DataFrame({"user": ["a", "c", "c"], "item": ["x", "z", "x"], "rating": [4.0, 2.0, 3.0]})
    fitted = from_fastai(source, classes, train, (0, 5.5))
    assert fitted.users == ["a", "c"] and fitted.items == ["x", "z"]
    valid = pd.DataFrame({"user": ["a", "c", "b", "a"], "item": ["z", "x", "x", "y"], "rating": [1.0, 2.0, 3.0, 4.0]})
    assert evaluate.evaluate_ratings(fitted, valid)["cold"] == 2  # user b and item y: validation only
    pairs = torch.tensor([[classes["user"].o2i[u], classes["item"].o2i[i]] for u, i in (("a", "z"), ("c", "x"))])
    with torch.no_grad():
        theirs = source.eval()(pairs).numpy()
    np.testing.assert_allclose(evaluate.predict(fitted, ["a", "c"], ["z", "x"]), theirs, rtol=1e-6)


def test_close_matches_ignore_the_year_and_movielens_trailing_article():
    from types import SimpleNamespace

    from paddy.collab.interpret import find_item, title_forms
    from paddy.core.errors import DataError

    assert title_forms("matrix, the (1999)") == ("matrix, the (1999)", "matrix, the", "matrix", "the matrix")
    fitted = SimpleNamespace(titles=["Max (2002)", "Amateur (1994)", "Matrix, The (1999)"], items=["1", "2", "3"])
    for typed in ("Matrx", "The Matrx"):
        with pytest.raises(DataError, match=r"did you mean Matrix, The \(1999\)"):
            find_item(fitted, typed)



def test_library_config_picks_its_weight_decay_per_mode_and_recipe():
    assert CollabConfig(recipe="book").wd == 0.1 and CollabConfig(wd_mode="l2").wd == 1e-4
    assert CollabConfig(recipe="book", wd_mode="l2").wd == 1e-4
    book = CollabConfig(recipe="book", wd_mode="l2").replace(wd_mode="decoupled")
    assert book.wd == 0.1  # a defaulted wd follows the mode
    assert CollabConfig(wd=0.3).replace(wd_mode="l2").wd == 0.3  # a given one is kept
    assert CollabConfig(wd_mode="l2").to_dict()["wd"] == 1e-4 and "defaulted" not in CollabConfig().to_dict()
    assert (book.bs, book.lr, book.epochs, book.factors) == (64, 5e-3, 5, 50)  # fit_one_cycle(5, 5e-3, wd=0.1)
    fast = CollabConfig()
    assert fast.bs > 64 and fast.replace(kind="autorec").factors == 500  # each kind its own fast recipe
    with pytest.raises(ConfigError, match="the book's recipe has no autorec"):
        CollabConfig(kind="autorec", recipe="book")
    with pytest.raises(ConfigError, match="drop lr"):
        CollabConfig(kind="blend", lr=0.1)
    with pytest.raises(ConfigError, match="not among"):
        CollabConfig(kind="blend", members=("autorec", "fastai"))


def test_collab_library_modules_import_at_the_top_and_the_cli_module_stays_light():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    package = Path(models.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        inner = [node.lineno for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                 for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)]
        assert not inner, f"{path.name} imports inside a function at line(s) {inner}"
    cli = next(name for name in ("paddy.cli.collab", "paddy.commands.collab") if (package.parent / (
        name.replace("paddy.", "", 1).replace(".", "/") + ".py")).is_file())
    code = f"import sys, {cli}; heavy = {{'torch', 'fastai', 'pandas'}} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)
