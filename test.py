"""Evaluate a LIIF checkpoint on a test config: PSNR with the official protocol.

The last line printed is `result: NN.NNNN` (mean PSNR in dB over the images), as in the
official test.py. Config paths under ./load are re-rooted with --data-root (or the
LIIF_DATA_ROOT environment variable).

Example:
  python test.py --config configs/test/test-set5-4.yaml \\
      --model pretrained/edsr-baseline-liif.pth --data-root ../shared/data
"""
import argparse
import os
import sys
from typing import List, Optional

from torch.utils.data import DataLoader

import datasets
import models
from utils import PRECISIONS, load_checkpoint, resolve_device
from utils.config import apply_overrides, load_config, reroot, require
from utils.evaluation import eval_psnr


BICUBIC_SPEC = {'name': 'bicubic', 'args': {}, 'sd': {}}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='test config (YAML)')
    parser.add_argument('--model', required=True,
                        help="checkpoint in the official format (.pth), or 'bicubic' for the "
                             'bicubic-interpolation baseline')
    parser.add_argument('--data-root', default=os.environ.get('LIIF_DATA_ROOT'),
                        help='folder that replaces ./load in config paths '
                             '(default: $LIIF_DATA_ROOT, else ./load as written)')
    parser.add_argument('--device', default='auto',
                        help='auto, cpu, cuda or cuda:N (default: %(default)s)')
    parser.add_argument('--num-workers', type=int, default=None,
                        help='data loading processes (default: 4 on CUDA, 0 on CPU)')
    parser.add_argument('--impl', choices=['fast', 'reference'], default='fast',
                        help='query path: fast, or the paper-faithful reference '
                             '(default: %(default)s)')
    parser.add_argument('--precision', choices=list(PRECISIONS), default='fp32',
                        help='fp32, or bf16/fp16 autocast (default: %(default)s)')
    parser.add_argument('--set', dest='overrides', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. eval_bsize=10000')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        config = reroot(apply_overrides(load_config(args.config), args.overrides), args.data_root)
        spec = require(config, 'test_dataset', args.config)
        dataset = datasets.make(require(spec, 'dataset', f'{args.config}: test_dataset'))
        dataset = datasets.make(require(spec, 'wrapper', f'{args.config}: test_dataset'),
                                args={'dataset': dataset})
        num_workers = args.num_workers
        if num_workers is None:
            num_workers = 4 if device.type == 'cuda' else 0
        loader = DataLoader(dataset, batch_size=spec.get('batch_size', 1),
                            num_workers=num_workers, pin_memory=device.type == 'cuda')
        model_spec = BICUBIC_SPEC if args.model == 'bicubic' and not os.path.exists(args.model) \
            else load_checkpoint(args.model)['model']
        model = models.make(model_spec, load_sd=True).to(device)
        result = eval_psnr(loader, model, device, data_norm=config.get('data_norm'),
                           eval_type=config.get('eval_type'), eval_bsize=config.get('eval_bsize'),
                           verbose=not args.quiet, impl=args.impl, precision=args.precision)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    print(f'result: {result:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
