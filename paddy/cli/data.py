"""`paddy sample`, `paddy check`, `paddy resize`: make, validate and shrink a competition folder."""

import argparse
import sys

from paddy.cli.types import positive_int

CHECK_LIMIT = 20  # problem lines shown before "... and N more"


def wxh(text):
    """WIDTHxHEIGHT (e.g. 480x640) as an argparse type."""
    from paddy.core.errors import ConfigError
    from paddy.data.sample import parse_wxh

    try:
        return parse_wxh(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers):
    """Add the sample, check and resize subcommands."""
    p = subparsers.add_parser("sample", help="write a synthetic competition folder with the real layout")
    p.add_argument("out", metavar="OUT", help="folder to create (must not exist, or be empty)")
    p.add_argument("--n-train", type=positive_int, default=200, help="training images (default 200)")
    p.add_argument("--n-test", type=positive_int, default=50, help="test images (default 50)")
    p.add_argument("--size", type=wxh, default=(480, 640), help="WIDTHxHEIGHT of the images (default 480x640)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.set_defaults(func=run_sample)

    p = subparsers.add_parser("check", help="report every problem in a competition folder, in one pass")
    p.add_argument("data", metavar="DATA", help="competition folder (train.csv, train_images/, ...)")
    p.set_defaults(func=run_check)

    p = subparsers.add_parser("resize", help="cached smaller copies of a competition folder (same layout)")
    p.add_argument("data", metavar="DATA", help="competition folder to read")
    p.add_argument("out", metavar="OUT", help="folder to write (outside DATA); reruns skip files up to date")
    p.add_argument("--max-size", type=positive_int, required=True, help="longest side of the copies, in pixels")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: one per CPU)")
    p.set_defaults(func=run_resize)


def run_sample(args):
    """paddy sample OUT."""
    from paddy.data.sample import make_sample

    out = make_sample(args.out, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=args.seed,
                      progress=sys.stdout.isatty())
    width, height = args.size
    print(f"wrote {out}: {args.n_train} train and {args.n_test} test images, {width}x{height}, seed {args.seed}")


def run_check(args):
    """paddy check DATA: exit 0 when clean, else one line per problem and exit 2."""
    from paddy.data.check import check_data

    report = check_data(args.data, progress=sys.stdout.isatty())
    if report.ok:
        print(f"{report.data}: ok ({report.n_train_images} train and {report.n_test_images} test images, "
              "all decoded)")
        return 0
    for line in report.lines(CHECK_LIMIT):
        print(f"paddy check: {line}", file=sys.stderr)
    return 2


def run_resize(args):
    """paddy resize DATA OUT --max-size N."""
    from paddy.data.resize import resize_folder

    summary = resize_folder(args.data, args.out, args.max_size, workers=args.workers, progress=sys.stdout.isatty())
    print(summary.describe())
