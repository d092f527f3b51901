"""Make the compact copy of the official ground truth that tests/ carries (about 3.5 MB), so
that the vector tests run in any clone, without ../shared.

From ../shared/reference (vectors/, platform/ and lmf/): every tiny seeded checkpoint as it is,
LMF's CMSR tables and configs as they are; each vector file with at most --queries queries of
a flat query list (a seeded random subset, its indices kept as `query_index`), query grids and
LMF's CMSR cases whole (SRNO attends over the whole grid, CMSR renders whole images), encoder
outputs cut to their first --channels channels, and the `pred01_clamped` arrays left out (they
follow from `pred`); the index and layout JSON files gzipped. The official checkpoint's cases
are kept too: the tests check them against pretrained/edsr-baseline-liif.pth, which
scripts/setup.sh downloads.

Example:
  python scripts/make_test_reference.py --shared ../shared/reference --out tests/reference
"""
import gzip
import os
import shutil
import sys
from typing import List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number, run_main  # noqa: E402

SEED = 0


def gzip_copy(src: str, dest: str) -> None:
    """Gzipped copy, the same bytes on every run (no time stamp)."""
    with open(src, 'rb') as f, open(dest, 'wb') as raw, \
            gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, filename='') as g:
        g.write(f.read())


def compact_vectors(src: str, dest: str, queries: int, channels: int) -> None:
    data = dict(np.load(src))
    data.pop('pred01_clamped', None)
    whole = 'cmsr' in os.path.basename(src)
    if 'feat' in data:
        data['feat'] = data['feat'][:, :channels]
    elif data['coord'].ndim == 3 and data['coord'].shape[1] > queries and not whole:
        count = data['coord'].shape[1]
        index = np.sort(np.random.default_rng(SEED).choice(count, queries, replace=False))
        for key in ('coord', 'cell', 'pred'):
            data[key] = data[key][:, index]
        data['query_index'] = index
    np.savez_compressed(dest, **data)


def make(shared: str, out: str, queries: int, channels: int) -> int:
    """Writes the compact copy; returns its size in bytes."""
    for sub in ('vectors', 'platform', 'lmf'):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(shared, sub))):
            src, dest = os.path.join(shared, sub, name), os.path.join(out, sub, name)
            if name.endswith('.npz'):
                compact_vectors(src, dest, queries, channels)
            elif name.endswith('.pth') or name.endswith('.tsv') or name.endswith('.yaml'):
                shutil.copyfile(src, dest)
            elif name.endswith('.json'):
                gzip_copy(src, dest + '.gz')
    for name in ('official_layouts.json', 'psnr.tsv'):
        src = os.path.join(shared, name)
        if name.endswith('.json'):
            gzip_copy(src, os.path.join(out, name + '.gz'))
        else:
            shutil.copyfile(src, os.path.join(out, name))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--shared', default='../shared/reference',
                        help='the full reference folder (default: %(default)s)')
    parser.add_argument('--out', default='tests/reference',
                        help='where to write the compact copy (default: %(default)s)')
    parser.add_argument('--queries', type=number(int, 1), default=400,
                        help='queries kept per flat query list (default: %(default)s)')
    parser.add_argument('--channels', type=number(int, 1), default=8,
                        help='encoder output channels kept (default: %(default)s)')
    args = parser.parse_args(argv)

    def body() -> int:
        if not os.path.isdir(args.shared):
            raise FileNotFoundError(f'reference folder not found: {args.shared}')
        if args.queries < 1 or args.channels < 1:
            raise ValueError('--queries and --channels must be >= 1')
        size = make(args.shared, args.out, args.queries, args.channels)
        print(f'wrote {args.out} ({size / 2 ** 20:.2f} MB)')
        return 0
    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
