"""`paddy sample`, `paddy check`, `paddy resize`: make, validate and shrink a competition folder."""

import argparse
import sys
import textwrap

from paddy.cli.types import in_range, size
from paddy.core.config import limits_text

CHECK_LIMIT = 20  # problem lines shown before "... and N more"
RESIZE_HELP = ("a cache of a competition folder: smaller JPEG copies (same layout), or decoded arrays already "
               "through the item transform (--format array)")
RESIZE_DESCRIPTION = """\
--format jpeg (default) writes smaller JPEG copies, same layout, longest side --max-size: every epoch still decodes
them. --format array decodes every image once, through the item transform of --item-size/--item-method (fastai's
Resize geometry, as paddy train applies it), into train.npy and test.npy (uint8, memory-mapped when read), with
index.csv and manifest.json; paddy train, probe and ensemble then take OUT as DATA and read a batch per array
slice. Size: N x H x W x 3 bytes (the real competition at 256,192: 13,876 images, 2.0 GB). The folder is built
beside OUT and renamed into place (an interrupted run leaves no half cache); a cache of other images, another
item size or method, or a changed source is refused by the runs that read it.
"""


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
    p.add_argument("--n-train", type=in_range("n_images"), default=200,
                   help=f"training images, {limits_text('n_images')} (default 200)")
    p.add_argument("--n-test", type=in_range("n_images"), default=50,
                   help=f"test images, {limits_text('n_images')} (default 50)")
    p.add_argument("--size", type=wxh, default=(480, 640),
                   help=f"WIDTHxHEIGHT of the images, sides {limits_text('side')} (default 480x640)")
    p.add_argument("--seed", type=in_range("seed"), default=42, help=f"random seed, {limits_text('seed')} (default 42)")
    p.add_argument("--competition", default=None, metavar="SLUG",
                   help="the Kaggle competition the folder stands in for, recorded in its marker for the "
                        "submissions log (default: paddy-disease-classification, whose layout it has)")
    p.set_defaults(func=run_sample)

    p = subparsers.add_parser("check", help="report every problem in a competition folder or cache, in one pass")
    p.add_argument("data", metavar="DATA", help="competition folder (train.csv, train_images/, ...), or an array "
                   "cache (paddy resize --format array): its arrays whole, its source unchanged")
    p.set_defaults(func=run_check)

    description = textwrap.fill(RESIZE_HELP + ".", 116) + "\n\n" + RESIZE_DESCRIPTION
    p = subparsers.add_parser("resize", help=RESIZE_HELP, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="competition folder to read")
    p.add_argument("out", metavar="OUT", help="folder to write (outside DATA); reruns skip what is up to date")
    p.add_argument("--format", choices=("jpeg", "array"), default="jpeg",
                   help="jpeg (default): smaller copies, same layout; array: one uint8 array per split")
    p.add_argument("--max-size", type=in_range("side"),
                   help=f"jpeg: longest side of the copies, in pixels ({limits_text('side')})")
    p.add_argument("--item-size", type=size,
                   help=f"array: the item size runs will train at, HEIGHT,WIDTH, each side {limits_text('side')}")
    p.add_argument("--item-method", choices=("squish", "crop", "pad"), default="squish",
                   help="array: the item transform (default squish), as paddy train's --item-method")
    p.add_argument("--workers", type=in_range("workers"), default=None,
                   help=f"processes, {limits_text('workers')} (default: one per CPU)")
    p.set_defaults(func=run_resize)


def run_sample(args):
    """paddy sample OUT."""
    from paddy.data.competition import COMPETITION
    from paddy.data.sample import make_sample

    out = make_sample(args.out, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=args.seed,
                      progress=sys.stdout.isatty(), competition_slug=args.competition or COMPETITION)
    width, height = args.size
    print(f"wrote {out}: {args.n_train} train and {args.n_test} test images, {width}x{height}, seed {args.seed}")


def run_check(args):
    """paddy check DATA: exit 0 when clean, else one line per problem and exit 2."""
    from paddy.data.array_cache import is_array_cache
    from paddy.data.folder import count_images
    from paddy.data.verdict import check_and_remember

    if not sys.stdout.isatty():  # a terminal shows a bar; a log gets what is happening before the minute it takes
        what = "an array cache" if is_array_cache(args.data) else f"{count_images(args.data)} images"
        print(f"checking {args.data} ({what})...", flush=True)
    report = check_and_remember(args.data, progress=sys.stdout.isatty())
    if report.ok:
        how = "an array cache: arrays whole, source unchanged" if is_array_cache(args.data) else "all decoded"
        print(f"{report.data}: ok ({report.n_train_images} train and {report.n_test_images} test images, {how})")
        return 0
    for line in report.lines(CHECK_LIMIT):
        print(f"paddy check: {line}", file=sys.stderr)
    return 2


def run_resize(args):
    """paddy resize DATA OUT --max-size N, or DATA OUT --format array --item-size H,W [--item-method M]."""
    from paddy.core.errors import ConfigError

    if args.format == "array":
        from paddy.data.array_cache import write_array_cache

        if args.item_size is None or args.max_size is not None:
            raise ConfigError("--format array takes --item-size HEIGHT,WIDTH (the size runs train at), not --max-size")
        summary = write_array_cache(args.data, args.out, args.item_size, args.item_method, workers=args.workers)
    else:
        from paddy.data.resize import resize_folder

        if args.max_size is None or args.item_size is not None:
            raise ConfigError("a JPEG cache takes --max-size N; --item-size is for --format array")
        summary = resize_folder(args.data, args.out, args.max_size, workers=args.workers,
                                progress=sys.stdout.isatty())
    print(summary.describe())
