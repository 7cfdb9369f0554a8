"""`paddy --help` wall time: this checkout against another (e.g. a worktree of an older commit), side by side.

Runs alternate between the two checkouts so machine load hits both alike; prints the median and best of each and
their ratio. The CLI imports lazily, so help should cost a Python start-up and argparse, not torch or fastai.

    git worktree add /tmp/before <commit> && python bench/cli_help.py --baseline /tmp/before
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
VERBS = ([], ["train"], ["probe"], ["collab"])


def entry(root):
    """The module `python -m` runs for the CLI in `root` (paddy.cli.main since the layers; paddy.cli before)."""
    return "paddy.cli.main" if (root / "paddy" / "cli" / "main.py").is_file() else "paddy.cli"


def time_help(root, verb, python):
    """Seconds for one `python -m <cli> VERB --help` run from `root`."""
    start = time.perf_counter()
    subprocess.run([python, "-m", entry(root), *verb, "--help"], cwd=root, capture_output=True, check=True,
                   env=dict(os.environ, PYTHONPATH=str(root)))
    return time.perf_counter() - start


def main(argv=None):
    """Time every verb's help in both checkouts, alternating, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout of paddy to compare with")
    parser.add_argument("--repeats", type=int, default=15, help="runs per verb and checkout (default 15)")
    args = parser.parse_args(argv)
    print("| command | baseline median ms (best) | this median ms (best) | this / baseline |")
    print("|---|---|---|---|")
    for verb in VERBS:
        times = {HERE: [], args.baseline.resolve(): []}
        for _ in range(args.repeats):
            for root in times:
                times[root].append(time_help(root, verb, sys.executable))
        base, this = times[args.baseline.resolve()], times[HERE]
        label = " ".join(["paddy", *verb, "--help"])
        print(f"| {label} | {statistics.median(base) * 1000:.0f} ({min(base) * 1000:.0f}) | "
              f"{statistics.median(this) * 1000:.0f} ({min(this) * 1000:.0f}) | "
              f"{statistics.median(this) / statistics.median(base):.2f} |")


if __name__ == "__main__":
    main()
