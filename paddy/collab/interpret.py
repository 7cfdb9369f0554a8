"""Explaining a fitted model: item biases, a PCA map of item factors, and the items most like a given one."""

import difflib
import re

import numpy as np
from matplotlib.figure import Figure

from paddy.collab.evaluate import predict_index
from paddy.collab.models import item_vectors, table
from paddy.core import atomic
from paddy.core.errors import DataError

MIN_COUNT = 20  # training ratings an item needs to be listed as similar


def item_biases(fitted, n=5):
    """(lowest, highest): `n` (title, bias) pairs each, or None when the model has no item bias."""
    weight = table(fitted.model, "item_bias")
    if weight is None:
        return None
    bias = weight.detach().reshape(-1).numpy()[1:]
    order = np.argsort(bias, kind="stable")
    lowest = [(fitted.titles[i], float(bias[i])) for i in order[:n]]
    highest = [(fitted.titles[i], float(bias[i])) for i in order[::-1][:n]]
    return lowest, highest


def item_factors(fitted):
    """The item vectors without the unknown row (n_items, n_factors), or None for a model without them."""
    vectors = item_vectors(fitted.model)
    return None if vectors is None else vectors.numpy()[1:]


def rating_profiles(fitted):
    """Each known item's predicted ratings by every training user, less the user and item means: (n_items, n_users).

    Removing both means leaves what is particular to an item and a user together: two items that only share a
    popularity and a rating scale (all an additive model knows) are not alike here.
    """
    users, items = np.arange(1, len(fitted.users) + 1), np.arange(1, len(fitted.items) + 1)
    grid_items, grid_users = np.repeat(items, len(users)), np.tile(users, len(items))
    table = predict_index(fitted.model, grid_users, grid_items).reshape(len(items), len(users))
    return table - table.mean(0) - table.mean(1, keepdims=True) + table.mean()


def similarity_measure(fitted):
    """What `similar_items` ranks by for this model, in words."""
    if item_vectors(fitted.model) is not None:
        return "cosine of item codes" if fitted.kind == "autorec" else "cosine of item factors"
    why = "CollabNN's embeddings are not a space cosine reads" if fitted.kind == "nn" else "a blend has no item vectors"
    return f"cosine of predicted ratings over the training users, user and item means removed ({why})"


def pca_items(fitted, n=50):
    """2-D PCA coordinates of the `n` most-rated items' factors (PCA fitted on all items), with their titles."""
    factors = item_factors(fitted)
    if factors is None:  # nn, blend: each item's predicted ratings over the users play its vector
        factors = rating_profiles(fitted)
    centred = factors - factors.mean(0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    top = np.argsort(-fitted.item_counts()[1:], kind="stable")[:n]
    coords = centred[top] @ components[:2].T
    # One factor (or one item) gives a single component: plot it against a zero second axis.
    coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, [fitted.titles[i] for i in top]


def plot_pca(coords, titles, path):
    """Write a labelled scatter plot of PCA coordinates to `path` (PNG) atomically."""
    # A bare Figure renders with Agg and never touches pyplot's global backend or figure list (no display needed).
    fig = Figure(figsize=(12, 12))
    ax = fig.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=12)
    for (x, y), title in zip(coords, titles, strict=True):
        ax.annotate(title[:40], (x, y), fontsize=7, alpha=0.8)
    ax.set(xlabel="PC 1", ylabel="PC 2", title="Item factors: first two principal components (most-rated items)")
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    return path


def title_forms(title):
    """A lower-case title as people type it: as is, without its year, and without MovieLens's trailing article."""
    # "matrix, the (1999)": the year and the moved article halve difflib's similarity to a typed "matrx"
    bare = re.sub(r"\s*\(\d{4}\)$", "", title)
    article = re.fullmatch(r"(.*), (the|a|an)", bare)
    return (title, bare) + ((article[1], f"{article[2]} {article[1]}") if article else ())


def find_item(fitted, text):
    """Index of the item whose title (or id) is `text`: exact, else a unique substring; else a DataError."""
    wanted = str(text).strip().lower()
    titles = [title.lower() for title in fitted.titles]
    for i, (title, item) in enumerate(zip(titles, fitted.items, strict=True)):
        if wanted in (title, str(item).lower()):
            return i + 1
    partial = [i for i, title in enumerate(titles) if wanted and wanted in title]
    if len(partial) == 1:
        return partial[0] + 1
    if partial:
        counts = fitted.item_counts()[1:]
        names = [fitted.titles[i] for i in sorted(partial, key=lambda i: -counts[i])[:5]]
        raise DataError(f"{text!r} matches {len(partial)} titles, e.g. {'; '.join(names)}; give the full title")
    forms = {}
    for i, title in enumerate(titles):
        for form in title_forms(title):
            forms.setdefault(form, i)
    close = dict.fromkeys(fitted.titles[forms[c]] for c in difflib.get_close_matches(wanted, list(forms), 3, 0.5))
    hint = f"did you mean {'; '.join(close)}?" if close else \
        "no close match either; check the spelling (titles carry the year, e.g. 'Toy Story (1995)')"
    raise DataError(f"no item titled {text!r}; {hint}")


def similar_items(fitted, index: int, n: int = 10, min_count: int = MIN_COUNT) -> list:
    """The `n` items closest to item `index`: (title, similarity) pairs, by `similarity_measure(fitted)`.

    Only items with at least `min_count` training ratings are candidates: a rarely rated item's vector is mostly
    initial noise pulled by a handful of users, and would crowd the list. When no other item has that many, that is
    a DataError saying the highest count (the filter is never dropped silently).
    """
    counts = fitted.item_counts()[1:]
    candidates = np.flatnonzero(counts >= min_count)
    candidates = candidates[candidates != index - 1]
    if len(candidates) == 0:
        most = int(np.delete(counts, index - 1).max()) if len(counts) > 1 else 0
        raise DataError(f"no other item has at least {min_count} training ratings (the most rated has {most}); "
                        "lower --min-count")
    factors = item_factors(fitted)
    factors = rating_profiles(fitted) if factors is None else factors
    target, others = factors[index - 1], factors[candidates]
    sims = others @ target / ((np.linalg.norm(others, axis=1) + 1e-12) * (np.linalg.norm(target) + 1e-12))
    order = np.argsort(-sims, kind="stable")[:n]
    return [(fitted.titles[candidates[i]], float(sims[i])) for i in order]
