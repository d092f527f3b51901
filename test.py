"""Evaluate a checkpoint (LIIF, MetaSR, LTE, lte-fast, SRNO, LM-LIIF, LM-LTE) on a test config:
PSNR with the official protocol of each repo.

The last line printed is `result: NN.NNNN` (mean PSNR in dB over the images), as in the
official test.py. Config paths under ./load are re-rooted with --data-root (or the
LIIF_DATA_ROOT environment variable).

Protocols: LIIF's by default. LTE's test.py: --window N for SwinIR encoders (input mirror-padded
to (h // N + 1) * N, output cropped back) and --scale-max 4 (cells multiplied by max(s / 4, 1)
at scales s beyond training; LTE does it by default, LIIF does not). SRNO's test.py: --mcell
(the same clipping, with SRNO's scale_max 4). lte-fast's grid queries and SRNO's whole-image
decoding follow from the model and the config (`-fast` wrappers; for SRNO, eval_bsize counts
rows, attention running within each chunk of rows). LMF's test.py: --scale-max 4, and --cmsr
TABLE for its multi-scale rendering beyond x4.

Examples:
  python test.py --config configs/test/test-set5-4.yaml \\
      --model pretrained/edsr-baseline-liif.pth --data-root ../shared/data
  python test.py --config configs/test/test-set5-6.yaml --model lte.pth --scale-max 4
  python test.py --config configs/test/test-set5-4.yaml --model swinir-lte.pth --window 8
  python test.py --config configs/test/test-set5-12.yaml --model lmliif.pth --scale-max 4 \
      --cmsr s2m-lmliif.yaml
"""
import argparse
import sys
from functools import partial
from typing import List, Optional

from torch.utils.data import DataLoader

import datasets
from inference import Renderer, eval_psnr, load_decoder
from inference.cmsr import tables_for
from inference.options import RENDER_FLAGS, render_options
from utils import resolve_device
from utils.cli import (DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, num_workers,
                       run_main)
from utils.config import read_config, require, test_schema
from utils.devices import precision_note, return_freed_memory

SRNO_SCALE_MAX = 4  # SRNO's test.py default, used by --mcell


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='test config (YAML)')
    parser.add_argument('--model', required=True,
                        help="checkpoint in the official format (.pth), or 'bicubic' for the "
                             'bicubic-interpolation baseline')
    for names, spec in (DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, *RENDER_FLAGS):
        parser.add_argument(*names, **spec)
    parser.add_argument('--window', type=int, default=0, metavar='N',
                        help="LTE's SwinIR protocol: mirror-pad inputs to a multiple of N, crop "
                             'the output (default: 0, off)')
    parser.add_argument('--scale-max', type=float, default=None, metavar='S',
                        help="LTE's cell clipping: cells times max(scale / S, 1), the scale "
                             'from eval_type (default: off, as in LIIF; LTE uses 4)')
    parser.add_argument('--mcell', action='store_true',
                        help="SRNO's cell clipping: --scale-max 4 unless --scale-max is given")
    parser.add_argument('--cmsr', default=None, metavar='TABLE',
                        help="LMF's CMSR with this scale-to-mean table (YAML, the official "
                             'init_cmsr.py format; make one with scripts/make_cmsr_table.py): '
                             'beyond x4 each region is decoded at the lowest scale the table '
                             'allows (LMF models only; LMF\'s test.py uses --scale-max 4)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace) -> int:
    """Prints the mean PSNR of the checkpoint on the config's test set, with the flags'
    protocol (`result: NN.NNNN`, the last line, as the official test.py)."""
    device = resolve_device(args.device)
    note = precision_note(device, args.precision)
    if note and not args.quiet:
        print(note, file=sys.stderr)
    return_freed_memory()  # --max-memory: freed tensors go back to the system
    config = read_config(args.config, args.overrides, test_schema(datasets.DATASETS),
                         args.data_root)
    spec = require(config, 'test_dataset', args.config)
    dataset = datasets.make(require(spec, 'dataset', f'{args.config}: test_dataset'))
    dataset = datasets.make(require(spec, 'wrapper', f'{args.config}: test_dataset'),
                            args={'dataset': dataset})
    loader = DataLoader(dataset, batch_size=spec.get('batch_size', 1),
                        num_workers=num_workers(args, device.type),
                        pin_memory=device.type == 'cuda')
    model = load_decoder(args.model, device)
    scale_max = SRNO_SCALE_MAX if args.mcell and args.scale_max is None else args.scale_max
    cmsr = tables_for(model, args.cmsr, args.model) if args.cmsr is not None else None
    options = render_options(args, window=args.window, cmsr=cmsr)
    result = eval_psnr(loader, Renderer(model, config.get('data_norm'), options),
                       eval_type=config.get('eval_type'), eval_bsize=config.get('eval_bsize'),
                       scale_max=scale_max, verbose=not args.quiet)
    print(f'result: {result:.4f}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(partial(evaluate, parse_args(argv)), 'interrupted; no result')


if __name__ == '__main__':
    sys.exit(main())
