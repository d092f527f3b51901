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
import os
import sys
from typing import List, Optional

from torch.utils.data import DataLoader

import datasets
from inference import RenderOptions, Renderer, eval_psnr, load_decoder
from inference.cmsr import tables_for
from inference.memory import parse_memory
from utils import PRECISIONS, resolve_device
from utils.devices import precision_note
from utils.config import apply_overrides, load_config, override_keys, reroot, require
from utils.config_schema import test_schema
from utils.errors import error_line
from utils.schema import check_config

SRNO_SCALE_MAX = 4  # SRNO's test.py default, used by --mcell


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
    parser.add_argument('--max-memory', type=parse_memory, default=None,
                        help='working memory of the model, e.g. 1GB: inputs too large to '
                             'encode whole are encoded in tiles sized to fit (the same codes) '
                             '(default: half the memory available, 80%% of a GPU\'s free memory)')
    parser.add_argument('--encoder-tile', type=int, default=0, metavar='N',
                        help='force encoder tiles of N x N codes with a halo (the same codes); '
                             '0 lets --max-memory decide (default)')
    parser.add_argument('--compile', action='store_true',
                        help='run the decoder under torch.compile: compiles on the first chunk '
                             '(about 10-30 s on a CPU, once per image size; cached on disk by '
                             'torch), then faster (1.4x to 1.5x in bf16 on our CPU); falls back '
                             'with a warning where it cannot compile')
    parser.add_argument('--set', dest='overrides', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. eval_bsize=10000')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        note = precision_note(device, args.precision)
        if note and not args.quiet:
            print(note, file=sys.stderr)
        config = apply_overrides(load_config(args.config), args.overrides)
        check_config(config, test_schema(datasets.DATASETS), args.config,
                     override_keys(args.overrides))
        config = reroot(config, args.data_root)
        spec = require(config, 'test_dataset', args.config)
        dataset = datasets.make(require(spec, 'dataset', f'{args.config}: test_dataset'))
        dataset = datasets.make(require(spec, 'wrapper', f'{args.config}: test_dataset'),
                                args={'dataset': dataset})
        num_workers = args.num_workers
        if num_workers is None:
            num_workers = 4 if device.type == 'cuda' else 0
        loader = DataLoader(dataset, batch_size=spec.get('batch_size', 1),
                            num_workers=num_workers, pin_memory=device.type == 'cuda')
        model = load_decoder('bicubic' if args.model == 'bicubic' and not os.path.exists(
            args.model) else args.model, device)
        scale_max = args.scale_max
        if args.mcell and scale_max is None:
            scale_max = SRNO_SCALE_MAX
        cmsr = tables_for(model, args.cmsr, args.model) if args.cmsr is not None else None
        options = RenderOptions(impl=args.impl, precision=args.precision, window=args.window,
                                encoder_tile=args.encoder_tile or None,
                                max_memory=args.max_memory, compile=args.compile, cmsr=cmsr)
        result = eval_psnr(loader, Renderer(model, config.get('data_norm'), options),
                           eval_type=config.get('eval_type'), eval_bsize=config.get('eval_bsize'),
                           scale_max=scale_max, verbose=not args.quiet)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no result", file=sys.stderr)
        return 130
    print(f'result: {result:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
