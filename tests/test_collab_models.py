"""AutoRec, SVD++ and the blend on generated MovieLens-100k-format data; fold-in, similar and flag fixes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from paddy.cli.main import main
from paddy.collab import models
from paddy.collab.blend import blend_weights
from paddy.collab.config import CollabConfig
from paddy.collab.evaluate import evaluate_ratings
from paddy.collab.fitted import MODEL_FILE, load_model
from paddy.collab.recommend import recommend
from paddy.collab.train import ItemLoader, fit_collab
from paddy.core.errors import DataError


def write_ml100k(folder, n_users=40, n_items=24, density=0.6, seed=0, base_share=0.8):
    """A MovieLens 100k-format folder with low-rank ratings: u.data, u.item, u1.base and u1.test (tab-separated)."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, 2)) @ rng.normal(size=(2, n_items)) + rng.normal(size=n_items) * 0.5
    rows = [(u + 1, i + 1, int(np.clip(np.rint(3 + taste[u, i]), 1, 5)), 880000000 + u * n_items + i)
            for u in range(n_users) for i in range(n_items) if rng.random() < density]
    lines = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]
    order = rng.permutation(len(lines))
    cut = int(len(lines) * base_share)
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    (folder / "u1.base").write_text("\n".join(lines[k] for k in sorted(order[:cut])) + "\n")
    (folder / "u1.test").write_text("\n".join(lines[k] for k in sorted(order[cut:])) + "\n")
    titles = [f"{i}|Film {i} (19{50 + i})|01-Jan-1995||http://x|0|1" for i in range(1, n_items + 1)]
    titles[0] = "1|Toy Story (1995)|01-Jan-1995||http://x|0|1"
    (folder / "u.item").write_bytes(("\n".join(titles) + "\n").encode("latin-1"))
    return folder


def run(capsys, *argv):
    """Run the CLI; returns (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k")


@pytest.fixture(scope="module")
def trained(ml100k, tmp_path_factory):
    """One output folder per new model, trained once on the canonical u1 split of the generated folder."""
    outs = {}
    for kind in ("autorec", "svdpp", "blend"):
        outs[kind] = tmp_path_factory.mktemp(kind) / "out"
        assert main(["collab", "--data", str(ml100k), "--split", "u1", "--model", kind, "--out", str(outs[kind]),
                     "--quiet"]) == 0
    return outs


@pytest.fixture(autouse=True)
def fresh_output(capsys):
    """Each test reads only its own output (the module fixture's training reports are dropped)."""
    capsys.readouterr()


def test_autorec_is_its_formula_an_item_column_through_a_sigmoid_code():
    torch.manual_seed(0)
    pairs, ratings = np.array([[1, 1], [2, 1], [1, 2], [3, 3]]), np.array([4.0, 2.0, 5.0, 1.0])
    model = models.AutoRec(4, 4, 3, history=(pairs, ratings))
    column = torch.tensor([0.0, 4.0, 2.0, 0.0])  # item 1: user 1 gave 4, user 2 gave 2
    expected = model.decoder(torch.sigmoid(model.encoder(column)))[3]
    assert torch.allclose(model(torch.tensor([[3, 1]])), expected[None])


def test_svdpp_user_is_its_factors_plus_the_normalised_sum_of_implicit_factors():
    torch.manual_seed(0)
    model = models.SVDpp(3, 4, 2, history=(np.array([[1, 1], [1, 3], [2, 2]]), None))
    x = torch.tensor([[1, 2]])
    user = model.user_factors.weight[1] + (model.implicit.weight[1] + model.implicit.weight[3]) / 2 ** 0.5
    expected = user @ model.item_factors.weight[2] + model.user_bias.weight[1, 0] + model.item_bias.weight[2, 0]
    assert torch.allclose(model(x), expected[None])


def test_blend_weights_recover_a_known_linear_mix():
    rng = np.random.default_rng(0)
    preds = rng.normal(size=(500, 3))
    target = preds @ np.array([0.5, 0.3, 0.2]) + 0.7
    assert np.allclose(blend_weights(preds, target, ridge=0.0), [0.5, 0.3, 0.2, 0.7])


def test_item_loader_batches_hold_whole_items_and_every_rating_once():
    x = torch.tensor([[u, i] for u in range(1, 8) for i in range(1, 6) if (u + i) % 3])
    loader = ItemLoader(x, torch.arange(len(x)).float(), bs=5, shuffle=True, seed=0)
    batches = list(loader)
    assert sorted(torch.cat([y for _, y in batches]).long().tolist()) == list(range(len(x)))
    seen = [set(xb[:, 1].tolist()) for xb, _ in batches]
    assert all(not a & b for k, a in enumerate(seen) for b in seen[k + 1:])  # no item split over two batches
    assert len(loader) == len(batches)


@pytest.mark.parametrize("kind", ["autorec", "svdpp", "blend"])
def test_new_models_train_score_and_recommend(trained, capsys, kind):
    out = trained[kind]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == kind and metrics["valid_rmse"] < 1.2
    fitted = load_model(out)
    rows, how = recommend(fitted, "3", n=4)
    assert len(rows) == 4 and how == "known user"
    assert not {item for item, _, _ in rows} & {fitted.items[i - 1] for i in fitted.seen_by(fitted.user_index("3"))}
    code, text, err = run(capsys, "collab", "recommend", "--model", str(out), "--user", "new", "--rated", "2=5",
                          "Toy=1")
    assert code == 0 and "fold-in of 2 rating(s) for a new user" in text and "'Toy' taken as Toy Story (1995)" in text
    if kind == "blend":
        assert set(metrics["blend"]["weights"]) == {"autorec", "svdpp", "bias", "nn", "dot", "intercept"}


def test_similar_says_what_it_ranks_by_per_model(trained, capsys):
    expected = {"autorec": "cosine of item codes", "svdpp": "cosine of item factors",
                "blend": "cosine of predicted ratings over the training users, user and item means removed (a blend"}
    for kind, measure in expected.items():
        code, text, err = run(capsys, "collab", "similar", "--model", str(trained[kind]), "--item", "2", "-n", "3",
                              "--min-count", "1")
        assert code == 0 and measure in text and len(text.strip().splitlines()) == 4, (kind, err)


def test_cold_start_user_for_svdpp_needs_ratings_one_line_exit_2(trained, capsys):
    for kind in ("svdpp", "blend"):
        code, _, err = run(capsys, "collab", "recommend", "--model", str(trained[kind]), "--user", "stranger")
        assert code == 2 and "SVD++ describes a user by the items they rated" in err
        assert len(err.strip().splitlines()) == 1
    code, text, _ = run(capsys, "collab", "recommend", "--model", str(trained["autorec"]), "--user", "stranger")
    assert code == 0 and "cold start" in text


def test_a_blend_file_missing_a_member_is_one_line_exit_2(trained, capsys, tmp_path):
    state = torch.load(trained["blend"] / MODEL_FILE, weights_only=True)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("members.svdpp.")}
    (tmp_path / "broken").mkdir()
    torch.save(state, tmp_path / "broken" / MODEL_FILE)
    with pytest.raises(DataError, match="no weights for svdpp"):
        load_model(tmp_path / "broken")
    code, _, err = run(capsys, "collab", "recommend", "--model", str(tmp_path / "broken"), "--user", "3")
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("flags", "message"), [
    (["--model", "blend", "--members", "autorec,fm"], "not among"),
    (["--model", "blend", "--lr", "0.1"], "drop lr"),
    (["--model", "autorec", "--recipe", "book"], "the book's recipe has no autorec"),
])
def test_bad_new_model_flags_are_one_line_exit_2_and_nothing_written(ml100k, tmp_path, capsys, flags, message):
    code, _, err = run(capsys, "collab", "--data", str(ml100k), "--out", str(tmp_path / "out"), *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_autorec_refuses_items_with_too_few_ratings(tmp_path, capsys):
    data = tmp_path / "once.csv"
    pd.DataFrame({"u": np.arange(60) % 6, "i": np.arange(60), "r": np.arange(60) % 5 + 1.0}).to_csv(data, index=False)
    code, _, err = run(capsys, "collab", "--data", str(data), "--model", "autorec", "--out", str(tmp_path / "out"))
    assert code == 2 and "AutoRec learns each item from its column" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once.csv"]


def test_autorec_kfold_runs(ml100k, tmp_path, capsys):
    code, text, err = run(capsys, "collab", "--data", str(ml100k), "--model", "autorec", "--kfold", "2",
                          "--epochs", "3", "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
    assert len(json.loads((tmp_path / "out" / "metrics.json").read_text())["folds"]) == 2


def test_recommend_for_a_known_user_with_new_ratings_keeps_what_they_rated(trained, capsys):
    # issue 18.4: --user 42 --rated used to forget 42's training ratings and could recommend films they rated
    fitted = load_model(trained["svdpp"])
    user = "3"
    seen = {fitted.items[i - 1] for i in fitted.seen_by(fitted.user_index(user))}
    unseen = [item for item in fitted.items if item not in seen]
    rows, how = recommend(fitted, user, n=len(fitted.items), rated=(f"{unseen[0]}=5",))
    assert f"on top of {len(seen)} known" in how
    listed = {item for item, _, _ in rows}
    assert not listed & seen and unseen[0] not in listed and len(listed) == len(unseen) - 1


def test_similar_on_nn_is_not_cosine_of_embeddings(ml100k, tmp_path, capsys):
    # issue 18.5: CollabNN's embeddings gave cosines all >= 0.99; rank by predicted ratings and say so
    out = tmp_path / "nn"
    assert main(["collab", "--data", str(ml100k), "--model", "nn", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    code, text, _ = run(capsys, "collab", "similar", "--model", str(out), "--item", "2", "-n", "10", "--min-count", "1")
    assert code == 0 and "cosine of predicted ratings" in text and "not a space cosine reads" in text
    values = [float(line.split()[1]) for line in text.strip().splitlines()[1:]]
    assert min(values) < 0.9


def test_similar_with_a_min_count_no_item_meets_says_so(trained, capsys):
    # issue 17.8: the filter used to be dropped silently when nothing passed
    code, out, err = run(capsys, "collab", "similar", "--model", str(trained["autorec"]), "--item", "2",
                         "--min-count", "1000000")
    assert code == 2 and "no other item has at least 1000000 training ratings" in err and not out
    assert len(err.strip().splitlines()) == 1


def test_kfold_1_is_refused(tmp_path, capsys):
    # issue 17.8: --help says K >= 2, and 1 used to be accepted as "no k-fold"
    with pytest.raises(SystemExit) as exit_info:
        main(["collab", "--kfold", "1", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "K >= 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_blend_weights_come_from_training_ratings_only(ml100k):
    ratings_frame = pd.read_csv(ml100k / "u1.base", sep="\t", header=None, names=["user", "item", "rating", "t"],
                                dtype=str)
    train = ratings_frame[["user", "item"]].assign(rating=ratings_frame["rating"].astype("float32"))
    poison = train.iloc[:50].assign(rating=1.0)  # a "test" split the weights must never see
    config = CollabConfig(kind="blend", members=("bias", "svdpp"))
    first = fit_collab(train, poison, config, progress=False)
    second = fit_collab(train, poison.assign(rating=5.0), config, progress=False)
    assert first.info["weights"] == second.info["weights"]
    assert evaluate_ratings(first.fitted, train)["rmse"] < 1.5
