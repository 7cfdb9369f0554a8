"""`paddy ensemble`: average run folders into a checked, logged submission."""

ENSEMBLE_EPILOG = """Each RUN is a folder written by `paddy train`. Rows are matched by image_id, never by position.
The ensemble is scored only on validation images that every member held out (members sharing split_seed share
them all). K-fold members (paddy train --folds K) are scored on their out-of-fold predictions of every training
image: each member's OOF accuracy and log loss, per-fold accuracy, equal weights, and the --fit blend scored
nested (weights fitted on K-1 folds, scored on the held-out one); the test set then gets weights fitted on all OOF
rows. The CSV is written atomically and one row is appended to the log (default: log.csv beside --out)."""


def register(subparsers):
    """Add the `ensemble` subcommand."""
    parser = subparsers.add_parser(
        "ensemble", help="average runs' TTA probabilities into a checked, logged submission", epilog=ENSEMBLE_EPILOG)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by paddy train")
    parser.add_argument("--data", required=True, help="the competition folder (its sample_submission.csv)")
    parser.add_argument("--out", required=True, help="submissions/NAME.csv (or a folder: a time-stamped name)")
    parser.add_argument("--weights", default=None, help="one weight per RUN, e.g. 2,1,1 (default: equal)")
    parser.add_argument("--fit", choices=("equal", "caruana", "hill"), default=None,
                        help="K-fold members (paddy train --folds K): fit non-negative weights on their out-of-fold "
                             "probabilities by Caruana ensemble selection or hill climbing (default: equal)")
    parser.add_argument("--metric", choices=("logloss", "accuracy"), default="logloss",
                        help="what --fit optimises (default: %(default)s; accuracy ties are broken by log loss)")
    parser.add_argument("-m", "--message", default="", help="a note for the submissions log")
    parser.add_argument("--log", default=None, help="the submissions log (default: log.csv beside --out)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--competition", default=None, metavar="SLUG",
                        help="the Kaggle competition, for the log (default: from --data's marker, which paddy "
                             "sample writes; empty when unknown)")
    parser.set_defaults(func=run_ensemble)


def run_ensemble(args):
    """Ensemble the runs and say where the CSV and its log row went."""
    from paddy.ensemble.blend import ensemble_runs, format_ensemble_table

    result = ensemble_runs(args.runs, args.data, args.out, weights=args.weights, message=args.message,
                           log=args.log, overwrite=args.overwrite, fit=args.fit, metric=args.metric,
                           competition_slug=args.competition)
    print(format_ensemble_table(result))
    print(f"wrote {result.out} ({sum(result.label_counts.values())} rows, checked); logged to {result.log}")

