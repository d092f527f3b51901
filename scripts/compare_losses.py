"""Compares the learning curves of training runs: the per-step losses train_liif.py writes to
<run folder>/losses.csv, as a Markdown table.

For each run: the number of steps, the mean loss over consecutive windows, the mean over the
last --tail share of the steps, and that mean's difference from the first run's (the
baseline: e.g. the plain fp32 step). With --max-diff, exit status 1 when a run's difference
exceeds it.

Examples:
  python scripts/compare_losses.py save/fp32-plain save/all-on --max-diff 0.02
  python scripts/compare_losses.py save/a/losses.csv save/b/losses.csv --windows 5 --tail 0.2
"""
import argparse
import math
import os
import sys
from typing import List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number, run_main  # noqa: E402


def read_losses(path: str) -> np.ndarray:
    """The loss column of a run folder's (or a file's) losses.csv, in step order."""
    if os.path.isdir(path):
        path = os.path.join(path, 'losses.csv')
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no losses file at {path} (train_liif.py writes "
                                "<run folder>/losses.csv)")
    try:
        rows = np.loadtxt(path, delimiter=',', skiprows=1, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path} is not a losses file (epoch,step,loss rows): {e}") from None
    if rows.shape[0] == 0 or rows.shape[1] != 3:
        raise ValueError(f"{path} holds no epoch,step,loss rows")
    return rows[np.argsort(rows[:, 1], kind='stable'), 2]


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('runs', nargs='+', help='run folders or losses.csv files; the first '
                                                'is the baseline')
    parser.add_argument('--tail', type=number(float, 0, 1, above=True), default=0.1,
                        help='share of the last steps whose mean is compared (default: 0.1)')
    parser.add_argument('--windows', type=number(int, 1), default=5,
                        help='windows the curve is averaged over in the table (default: 5)')
    parser.add_argument('--max-diff', type=number(float, 0), default=None,
                        help='exit 1 if a tail mean differs from the baseline\'s by more than '
                             'this relative amount (e.g. 0.02)')
    args = parser.parse_args(argv)
    return run_main(lambda: compare(args))


def compare(args: argparse.Namespace) -> int:
    """Prints the table; 1 if a tail mean is off by more than --max-diff."""
    curves = [read_losses(p) for p in args.runs]
    n = min(len(c) for c in curves)
    if any(len(c) != n for c in curves):
        print(f'note: runs differ in length; comparing their first {n} steps', file=sys.stderr)
    tail = max(1, round(n * args.tail))
    edges = np.linspace(0, n, min(args.windows, n) + 1).round().astype(int)
    heads = [f'steps {a + 1}-{b}' for a, b in zip(edges[:-1], edges[1:])]
    print('| run | steps | ' + ' | '.join(heads) + f' | last {tail} steps | vs first |')
    print('|---' * (len(heads) + 4) + '|')
    base, worst = curves[0][n - tail:n].mean(), 0.0
    for path, curve in zip(args.runs, curves):
        means = [curve[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]
        last = curve[n - tail:n].mean()
        diff = (last - base) / base
        worst = max(worst, abs(diff)) if np.isfinite(diff) else math.inf  # NaN: no agreement
        print(f'| {path} | {n} | ' + ' | '.join(f'{m:.5f}' for m in means) +
              f' | {last:.5f} | {100 * diff:+.2f}% |')
    if args.max_diff is not None and not math.isfinite(worst):
        print('a tail mean is not finite (a NaN or infinite loss): the runs cannot be said to '
              'agree', file=sys.stderr)
        return 1
    if args.max_diff is not None and worst > args.max_diff:
        print(f'a tail mean differs from the baseline by {100 * worst:.2f}%, more than '
              f'{100 * args.max_diff:.2f}%', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
