"""Explaining a fitted model: item biases, a PCA map of item factors, and the items most like a given one."""

import difflib
import re

import numpy as np
from matplotlib.figure import Figure

from paddy.core import atomic
from paddy.collab.models import table
from paddy.core.errors import DataError


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
    """The item factor table without the unknown row, as a NumPy array (n_items, n_factors)."""
    return table(fitted.model, "item_factors").detach().numpy()[1:]


def pca_items(fitted, n=50):
    """2-D PCA coordinates of the `n` most-rated items' factors (PCA fitted on all items), with their titles."""
    factors = item_factors(fitted)
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


def similar_items(fitted, index, n=10, min_count=20):
    """The `n` items closest to item `index` by cosine similarity of factors: (title, similarity) pairs.

    Only items with at least `min_count` training ratings are candidates (all items when too few are): a rarely
    rated item's factors are mostly initial noise pulled by a handful of users, and would crowd the list.
    """
    factors = item_factors(fitted)
    norms = np.linalg.norm(factors, axis=1) + 1e-12
    sims = factors @ factors[index - 1] / (norms * norms[index - 1])
    sims[index - 1] = -np.inf
    rare = fitted.item_counts()[1:] < min_count
    if (~rare).sum() > n:
        sims[rare] = -np.inf
    order = np.argsort(-sims, kind="stable")[:n]
    return [(fitted.titles[i], float(sims[i])) for i in order if np.isfinite(sims[i])]  # never the item itself
