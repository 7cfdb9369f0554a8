"""`paddy collab`: train a collaborative-filtering model (the default action) or use one (recommend, similar)."""

import argparse

from paddy.cli.types import positive_float, positive_int

DESCRIPTION = """Collaborative filtering: the fastai book's chapter 8 models trained fast; AutoRec, SVD++, a blend.

With no action it trains, evaluates and explains a model, then writes model.pth, metrics.json, pca_items.png and
crosstab.csv to --out. The actions use a trained model folder; an unknown user gets the mean embedding (cold
start), and --rated refits a user's vector on their known ratings plus the given ones (fold-in).

Recipes: fast (default; large batches, lr and wd retuned for them: reaches the book recipe's MSE over 20x sooner)
or book (fit_one_cycle(5, 5e-3, wd=0.1) at batch size 64, to reproduce the book). Flags given override either."""

EPILOG = """examples:
  paddy collab                                     embedded MovieLens latest-small, DotProductBias, fast recipe
  paddy collab --recipe book                       the book's fit_one_cycle(5, 5e-3, wd=0.1) at batch size 64
  paddy collab --model nn --epochs 3 --out runs/nn
  paddy collab --model blend --data ml-100k-folder/ --split u1   AutoRec + SVD++ + DotProductBias, weights fitted
                                                   on a held-out share of u1.base
  paddy collab --data ml-100k-folder/ --split u1   canonical MovieLens 100k base/test split
  paddy collab --kfold 5                           5-fold cross-validated MSE
  paddy collab recommend --model runs/collab --user 42 -n 10
  paddy collab recommend --model runs/collab --user new --rated "Toy Story (1995)=5" "Heat (1995)=2"
  paddy collab similar --model runs/collab --item "Matrix, The (1999)"
  paddy collab crosstab -n 10
"""


def _y_range(text):
    """LOW,HIGH or none."""
    if text.lower() == "none":
        return ()
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0,5.5) or none, got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {text!r}")
    return (low, high)


def _layers(text):
    """Comma-separated positive hidden sizes, e.g. 100,50."""
    try:
        sizes = tuple(positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 100,50, got {text!r}") from None
    return sizes


def _kfold(text):
    """An int >= 2."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"K-fold needs K >= 2, got {value} (leave --kfold out for one split)")
    return value


def _members(text):
    """Comma-separated blend member kinds."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _add_train_flags(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="ml-latest-small",
                      help="ml-latest-small (embedded, default), ml-100k (download), a MovieLens folder or a CSV")
    data.add_argument("--user-col", help="user column of a ratings CSV (default: its first column)")
    data.add_argument("--item-col", help="item column of a ratings CSV (default: its second column)")
    data.add_argument("--rating-col", help="rating column of a ratings CSV (default: its third column)")
    data.add_argument("--split", default="random", help="random (seeded 80/20, default) or u1..u5 (MovieLens 100k)")
    data.add_argument("--valid-pct", type=positive_float, default=0.2, help="validation share of a random split")
    data.add_argument("--kfold", type=_kfold, default=1, metavar="K",
                      help="K-fold cross-validation, K >= 2 (default: one split)")
    model = parser.add_argument_group("model and training")
    model.add_argument("--model", dest="kind", default="bias",
                       choices=("dot", "bias", "scratch", "nn", "fastai", "autorec", "svdpp", "blend"),
                       help="dot, bias (DotProductBias, default), scratch (create_params), nn (CollabNN), fastai "
                            "(fastai's collab_learner), autorec (I-AutoRec), svdpp (SVD++), blend (a linear blend "
                            "of --members)")
    model.add_argument("--recipe", default="fast", choices=("fast", "book"),
                       help="defaults for --bs/--lr/--wd/--epochs/--factors: fast (default) or book (bs 64, lr 5e-3, "
                            "wd 0.1, 5 epochs, 50 factors; not for autorec, svdpp, blend)")
    model.add_argument("--factors", type=positive_int, default=None,
                       help="latent factors (dot, bias, scratch, svdpp: 50) or AutoRec's code size (500)")
    model.add_argument("--layers", type=_layers, default=(100,), help="CollabNN hidden sizes, e.g. 100,50")
    model.add_argument("--y-range", type=_y_range, default=None,
                       help="LOW,HIGH of the sigmoid, or none (default: (0, 5.5) scaled to the rating range)")
    model.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the recipe's)")
    model.add_argument("--lr", type=positive_float, default=None, help="fit_one_cycle's max learning rate")
    model.add_argument("--wd", type=float, default=None,
                       help="weight decay (default: the recipe's when decoupled, 1e-4 with --wd-mode l2)")
    model.add_argument("--wd-mode", default="decoupled", choices=("decoupled", "l2"),
                       help="decoupled (fastai's default) or l2 (the book's loss + wd * sum(p**2)); the two need "
                            "very different wd: on latest-small, l2 at 0.1 gives MSE 1.93, at 1e-4 0.717")
    model.add_argument("--opt", default="fused", choices=("fused", "fastai"),
                       help="fused (torch's one-kernel AdamW, same update) or fastai (fastai's Adam)")
    model.add_argument("--bs", type=positive_int, default=None, help="batch size (default: the recipe's)")
    model.add_argument("--members", type=_members, default=None,
                       help="a blend's members, comma-separated (default: autorec,svdpp,bias,nn,dot), each with "
                            "its own fast recipe")
    model.add_argument("--blend-pct", type=positive_float, default=0.1,
                       help="share of the training ratings held out to fit the blend's weights (default 0.1)")
    model.add_argument("--seed", type=int, default=42)
    model.add_argument("--threads", type=positive_int, default=1,
                       help="torch threads while training (1 is fastest for small embedding models)")
    model.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", default="runs/collab", help="output folder (replaced if it is a collab output)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch table")


def register(subparsers):
    """Add `paddy collab` and its actions."""
    parser = subparsers.add_parser("collab", help="collaborative filtering: train, evaluate, recommend",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(parser)
    parser.set_defaults(func=train_command)
    actions = parser.add_subparsers(dest="collab_action", metavar="ACTION", title="actions (optional)")
    rec = actions.add_parser("recommend", help="top-N unseen items for a user (unknown users: cold start)")
    rec.add_argument("--model", required=True, help="a folder written by `paddy collab`")
    rec.add_argument("--user", required=True, help="user id; an unknown id gets the mean user (cold start)")
    rec.add_argument("-n", type=positive_int, default=10, help="how many items")
    rec.add_argument("--rated", nargs="+", default=(), metavar="TITLE=RATING",
                     help="ratings to fold in: a known user's vector and bias are refitted on their training ratings "
                          "plus these (a new user's on these alone); rated items are never recommended")
    rec.set_defaults(func=recommend_command)
    sim = actions.add_parser("similar", help="items closest to one item (cosine of item vectors; nn and blend: "
                                             "of predicted ratings)")
    sim.add_argument("--model", required=True, help="a folder written by `paddy collab`")
    sim.add_argument("--item", required=True, help="a title (or a unique part of one) or an item id")
    sim.add_argument("-n", type=positive_int, default=10, help="how many items")
    sim.add_argument("--min-count", type=positive_int, default=20,
                     help="only items with at least this many training ratings (rare items' vectors are noise); "
                          "when no other item has that many it is an error saying the highest count, never ignored")
    sim.set_defaults(func=similar_command)
    tab = actions.add_parser("crosstab", help="top-N users x top-N items, ratings where known")
    # SUPPRESS: keep the value given before the action (`paddy collab --data X crosstab`) instead of resetting it.
    tab.add_argument("--data", default=argparse.SUPPRESS, help="as for training (default: ml-latest-small)")
    for side in ("user", "item", "rating"):
        tab.add_argument(f"--{side}-col", default=argparse.SUPPRESS, help="as for training")
    tab.add_argument("-n", type=positive_int, default=15, help="users and items")
    tab.add_argument("--csv", help="also write the table to this CSV")
    tab.set_defaults(func=crosstab_command)


def train_command(args):
    """Train, evaluate, explain; print the final metrics, biases and similar items."""
    from paddy.collab.config import CollabConfig
    from paddy.collab.run import run_collab
    from paddy.core.runtime import resolve_device

    # None (a flag not given): CollabConfig takes the recipe's value for the model and wd mode
    config = CollabConfig(kind=args.kind, recipe=args.recipe, factors=args.factors, epochs=args.epochs, lr=args.lr,
                          wd=args.wd, wd_mode=args.wd_mode, bs=args.bs, seed=args.seed, y_range=args.y_range,
                          layers=args.layers, threads=args.threads, valid_pct=args.valid_pct, split=args.split,
                          device=resolve_device(args.device), opt=args.opt, blend_pct=args.blend_pct,
                          **({"members": args.members} if args.members else {}))
    report = run_collab(config, args.data, args.out, args.kfold, (args.user_col, args.item_col, args.rating_col),
                        progress=not args.quiet)
    print(format_report(report))


def format_report(report):
    """The text `paddy collab` prints after training."""
    m = report.metrics
    lines = [f"valid MSE {m['valid_mse']:.4f}  RMSE {m['valid_rmse']:.4f}  ({m['split']} split, "
             f"{m['valid']['cold']} of {m['valid']['n']} held-out ratings cold)",
             f"seconds per epoch {m['seconds_per_epoch']:.2f} ({m['threads']} torch thread(s)); "
             f"training {m['seconds_fit']:.1f} s, total {m['seconds_total']:.1f} s"]
    if m.get("blend"):
        lines.append("blend weights (fitted on " + f"{m['blend']['holdout']} held-out training ratings): "
                     + ", ".join(f"{name} {weight:+.3f}" for name, weight in m["blend"]["weights"].items()))
    if m["folds"]:
        lines.append("folds MSE: " + ", ".join(f"{f['mse']:.4f}" for f in m["folds"]))
    top = m["top_n"]
    lines.append(f"top-10 on held-out ratings >= {top['threshold']:g}: precision {top['precision@10']:.4f}  "
                 f"recall {top['recall@10']:.4f}  NDCG {top['ndcg@10']:.4f}  ({top['users']} users"
                 + (", fold 1's model and held-out ratings)" if m["folds"] else ")"))
    if report.biases:
        for name, rows in zip(("lowest item biases", "highest item biases"), report.biases, strict=True):
            lines.append(f"{name}: " + "; ".join(f"{title} ({bias:+.2f})" for title, bias in rows))
    title, rows, measure = report.similar
    lines.append(f"most similar to {title} ({measure}): " + "; ".join(f"{t} ({s:.2f})" for t, s in rows[:5]))
    lines.append(f"wrote {report.out}/: model.pth, metrics.json, pca_items.png, crosstab.csv")
    return "\n".join(lines)


def recommend_command(args):
    """Print the top-N unseen items for a user."""
    from paddy.collab.fitted import load_model
    from paddy.collab.recommend import recommend

    rows, how = recommend(load_model(args.model), args.user, args.n, args.rated)
    print(f"user {args.user}: {how}")
    for rank, (item, title, score) in enumerate(rows, 1):
        print(f"{rank:3d}. {score:5.2f}  {title}  [{item}]")


def similar_command(args):
    """Print the items most similar to one item."""
    from paddy.collab.fitted import load_model
    from paddy.collab.interpret import find_item, similar_items, similarity_measure

    fitted = load_model(args.model)
    index = find_item(fitted, args.item)
    rows = similar_items(fitted, index, args.n, args.min_count)
    print(f"most similar to {fitted.title(index)} ({similarity_measure(fitted)}; items with >= {args.min_count} "
          "training ratings):")
    for rank, (title, sim) in enumerate(rows, 1):
        print(f"{rank:3d}. {sim:+.3f}  {title}")


def crosstab_command(args):
    """Print (and optionally save) the top users x top items crosstab."""
    import pandas as pd

    from paddy.collab.data import crosstab, load_ratings
    from paddy.core import atomic

    table = crosstab(load_ratings(args.data, args.user_col, args.item_col, args.rating_col), args.n)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.rename(columns=lambda t: t[:18]).to_string(na_rep="."))
    if args.csv:
        atomic.write_csv(args.csv, table, index=True)
