"""Make (or tighten) a CMSR scale-to-mean table for an LMF model, as the official init_cmsr.py
of HeZongyao/LMF does: for the test config's scale (its eval_type, e.g. benchmark-12), every
image of the config decoded at that scale and at each lower decode scale, each decode scale's
threshold set to the highest code mean whose pixels it renders within --mse-threshold
(inference.cmsr.refine_table). Existing tables in --out are kept; the scale's own table is
tightened from where it stands, or started from 1s.

Use the table with `test.py --cmsr TABLE` and `demo.py --cmsr TABLE`.

Examples:
  python scripts/make_cmsr_table.py --config configs/test/test-div2k-12.yaml \\
      --model save/lmliif/epoch-last.pth --out s2m-lmliif.yaml
  python scripts/make_cmsr_table.py --config configs/test/test-set5-12.yaml \\
      --model lmlte.pth --out s2m-lmlte.yaml --data-root ../shared/data --mse-threshold 1e-5
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

from torch.utils.data import DataLoader
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402
from inference import load_decoder  # noqa: E402
from inference.cmsr import (DEFAULT_MSE, initial_table, load_tables, refine_table,  # noqa: E402
                            save_tables)
from inference.options import IMPL  # noqa: E402
from utils import resolve_device  # noqa: E402
from utils.cli import DATA_ROOT, DEVICE, OVERRIDES, ArgumentParser, number, run_main  # noqa: E402
from utils.config import read_config, require, test_schema  # noqa: E402
from utils.coords import flat_batch  # noqa: E402
from utils.metrics import eval_scale  # noqa: E402
from utils.normalization import normalisers  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True,
                        help="test config (YAML) whose eval_type gives the target scale")
    parser.add_argument('--model', required=True, help='LMF checkpoint (lmliif or lmlte)')
    parser.add_argument('--out', required=True,
                        help='YAML table file to write (its other scales are kept)')
    parser.add_argument('--mse-threshold', type=number(float, 0, above=True), default=DEFAULT_MSE,
                        help='MSE (normalised RGB) a decode scale may leave, as the official '
                             '--mse_threshold (default: %(default)s)')
    parser.add_argument('--trained-scale', type=number(float, 0, above=True), default=4,
                        help='the largest training scale: cells are multiplied by '
                             'max(scale / this, 1) (default: %(default)s)')
    for names, spec in (DATA_ROOT, DEVICE, IMPL, OVERRIDES):
        parser.add_argument(*names, **spec)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def make(args: argparse.Namespace) -> Tuple[int, dict]:
    """Updates and writes the table file; returns the target scale and its table."""
    device = resolve_device(args.device)
    config = read_config(args.config, args.overrides, test_schema(datasets.DATASETS),
                         args.data_root)
    scale = eval_scale(config.get('eval_type'))
    if scale is None:
        raise ValueError(f"{args.config} has no eval_type ('benchmark-<s>' or 'div2k-<s>'): "
                         "the table's target scale comes from it")
    spec = require(config, 'test_dataset', args.config)
    dataset = datasets.make(require(spec, 'dataset', f'{args.config}: test_dataset'))
    dataset = datasets.make(require(spec, 'wrapper', f'{args.config}: test_dataset'),
                            args={'dataset': dataset})
    tables = load_tables(args.out) if os.path.exists(args.out) else {}
    model = load_decoder(args.model, device).eval()
    if not getattr(model, 'supports_cmsr', False):
        raise ValueError(f"{args.model} is a {type(model).__name__} model; CMSR tables are "
                         "made for LMF models (lmliif, lmlte)")
    table = tables.get(scale) or initial_table(scale)
    table = dict(sorted(table.items()))
    inp_sub, inp_div, _, _ = normalisers(config.get('data_norm'), device)
    factor = max(scale / args.trained_scale, 1)
    loader = DataLoader(dataset, batch_size=1)
    for batch in tqdm(loader, desc=f'x{scale} table', disable=args.quiet):
        batch, _ = flat_batch({k: v.to(device) for k, v in batch.items()})
        inp = (batch['inp'] - inp_sub) / inp_div
        refine_table(model, inp, batch['coord'], batch['cell'] * factor, table,
                     args.mse_threshold, args.impl)
    tables[scale] = table
    save_tables(args.out, tables)
    return scale, table


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        scale, table = make(args)
        print(f"wrote {args.out}: x{scale} {table}")
        return 0
    return run_main(body, 'interrupted; the table file is unchanged')


if __name__ == '__main__':
    sys.exit(main())
