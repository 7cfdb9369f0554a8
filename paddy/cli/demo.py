"""`paddy demo`: the kit's main job end to end on a small synthetic competition."""

from pathlib import Path


def register(subparsers):
    """Add the `demo` subcommand."""
    demo = subparsers.add_parser(
        "demo", help="the kit's main job end to end on a small synthetic competition (CPU, minutes)")
    demo.add_argument("--workdir", default="demo", help="where everything goes (default: ./demo)")
    demo.set_defaults(func=run_demo)


def run_demo(args):
    """Run the demo and print its summary."""
    from paddy.demo import run_demo as demo

    print(demo(Path(args.workdir)).summary())
