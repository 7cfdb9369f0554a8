"""The `paddy` command: argparse subcommands, each a thin call into the library.

Each module in `paddy.cli` adds its subcommands with `register(subparsers)` and sets `func` on them;
`func(args)` calls one library function and prints its result. Errors the user can fix are `PaddyError`s:
printed here as one line, exit code 2.
"""

import argparse
import importlib
import sys
import warnings

from paddy import __version__
from paddy.core.errors import PaddyError

# Order is the order of `paddy --help`: a competitor's day, then the rest.
COMMAND_MODULES = (
    "paddy.cli.data",
    "paddy.cli.probe",
    "paddy.cli.train",
    "paddy.cli.ensemble",
    "paddy.cli.demo",
    "paddy.cli.kaggle",
    "paddy.cli.collab",
)

EPILOG = """a competitor's day:
  paddy sample data/                      synthetic competition folder with the real layout
  paddy check data/                       every problem in the folder, in one pass
  paddy resize data/ data256/ --max-size 256
  paddy probe data256/ --plan tiny        peak memory per model; smallest accum that fits
  paddy train data256/ --plan tiny --runs runs/
  paddy ensemble runs/* --data data256/ --out submissions/first.csv
  paddy submit submissions/first.csv -m "first try"
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where to look, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    """An error message on one line, whatever a file or flag put in it (a newline in an image id, say)."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


def build_parser():
    """The full argument parser, one subparser per command."""
    parser = ArgumentParser(
        prog="paddy", description="A kit for Kaggle image-classification competitions (fastai + timm).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"paddy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    describe_subcommands(parser)
    return parser


def describe_subcommands(parser):
    """Give every subcommand without a description its one-line help, so `paddy CMD --help` says what CMD does."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and summaries.get(name):
                    sub.description = summaries[name]
                describe_subcommands(sub)


def main(argv=None):
    """Entry point of the `paddy` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Said by a dependency on every import, about nothing a user of the command can change.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
    from paddy.core.runtime import progress_bars  # torch and fastprogress: only once a command runs, not for --help

    try:
        with progress_bars(sys.stdout.isatty()):  # bars on a terminal; in logs, fastai's epoch table only
            return args.func(args) or 0
    except PaddyError as error:
        print(f"paddy {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk full, a read-only or missing folder: the user's to fix, not a crash
        where = f": {error.filename}" if error.filename else ""
        print(f"paddy {args.command}: error: {one_line(error.strerror or error)}{one_line(where)}; check the path "
              "and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paddy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
