"""Evaluate a checkpoint (LIIF, MetaSR, LTE, lte-fast, SRNO, LM-LIIF, LM-LTE, CLIT) on a test config:
PSNR (and SSIM, LPIPS, DISTS) with the official protocol of each repo, or BasicSR's.

The last line printed is `result: NN.NNNN`, the mean of the first of --metrics (PSNR in dB by
default) over the images, as in the official test.py; the other means are on the line before.
--results FILE.csv writes every image's scores (`image,scale,<metric>,...`) and a JSON summary
beside it. Config paths under ./load are re-rooted with --data-root (or LIIF_DATA_ROOT).

Decoding protocols: LIIF's by default. LTE's test.py: --window N for SwinIR encoders (input
mirror-padded to (h // N + 1) * N, output cropped back) and --scale-max 4 (cells multiplied by
max(s / 4, 1) at scales s beyond training; LTE does it by default, LIIF does not). SRNO's
test.py: --mcell (the same clipping, with SRNO's scale_max 4). lte-fast's grid queries and
SRNO's whole-image decoding follow from the model and the config (`-fast` wrappers; for SRNO,
eval_bsize counts rows, attention running within each chunk of rows). LMF's test.py:
--scale-max 4, and --cmsr TABLE for its multi-scale rendering beyond x4.

Metric protocols (--protocol): liif (default): LIIF's PSNR on float outputs (benchmark-s: Y,
shave s; div2k-s: RGB, shave s + 6) and SSIM on the same crop and channels; basicsr: what most
SR papers report, BasicSR's calculate_psnr / calculate_ssim on 8-bit outputs (round(x * 255)),
crop = the scale (or --crop-border), RGB or --y-channel; clit: CLIT's test.py (LIIF's PSNR, its
own SSIM on float RGB without crop; its `eval_type: ssim-<s>` configs make SSIM the result; its
cascade scale lists come from the model); ciaosr: CiaoSR's test (mmedit's PSNR and SSIM: 8-bit,
Y, crop = scale) with its tiled test at x <= 4 (--ciaosr-tiles, default 192,32: each tile run as
an image of its own; `none`: whole images, as above x4). --self-ensemble x8 (EDSR's flips and
transposes) or rot4 (Thera's rotations). --lr matlab makes the on-the-fly LR of the x6+
configs with MATLAB's bicubic (as the LR_bicubic files) instead of the official PIL.

Examples:
  python test.py --config configs/test/test-set5-4.yaml \\
      --model pretrained/edsr-baseline-liif.pth --data-root ../shared/data
  python test.py --config configs/test/test-set5-6.yaml --model lte.pth --scale-max 4
  python test.py --config configs/test/test-set5-4.yaml --model swinir-lte.pth --window 8
  python test.py --config configs/test/test-set5-12.yaml --model lmliif.pth --scale-max 4 \\
      --cmsr s2m-lmliif.yaml
  python test.py --config configs/test/test-set5-4.yaml --model pretrained/edsr-baseline-liif.pth \\
      --protocol basicsr --metrics psnr,ssim --y-channel --results set5-4.csv
"""
import argparse
import csv
import json
import os
import sys
from functools import partial
from typing import Any, Dict, List, Optional


from inference import Renderer, load_decoder_and_norm
from inference.cmsr import tables_for
from inference.evaluation import Results, evaluate, test_loader
from inference.options import RENDER_FLAGS, render_options
from inference.self_ensemble import MODES
from inference.tiled_test import parse_tiles
from utils import resolve_device
from utils.cli import (DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, ArgumentParser, num_workers,
                       number, run_main)
from utils.devices import print_precision_note, return_freed_memory
from utils.files import atomic_path
from utils.metrics import PROTOCOLS, eval_scale, make_protocol, parse_metrics

SRNO_SCALE_MAX = 4  # SRNO's test.py default, used by --mcell


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='test config (YAML)')
    parser.add_argument('--model', required=True,
                        help="checkpoint in the official format (.pth), or 'bicubic' for the "
                             'bicubic-interpolation baseline')
    for names, spec in (DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, *RENDER_FLAGS):
        parser.add_argument(*names, **spec)
    parser.add_argument('--window', type=number(int, 0), default=0, metavar='N',
                        help="LTE's SwinIR protocol: mirror-pad inputs to a multiple of N, crop "
                             'the output (default: 0, off)')
    parser.add_argument('--scale-max', type=number(float, 0, above=True), default=None, metavar='S',
                        help="LTE's cell clipping: cells times max(scale / S, 1), the scale "
                             'from eval_type (default: off, as in LIIF; LTE uses 4)')
    parser.add_argument('--mcell', action='store_true',
                        help="SRNO's cell clipping: --scale-max 4 unless --scale-max is given")
    parser.add_argument('--cmsr', default=None, metavar='TABLE',
                        help="LMF's CMSR with this scale-to-mean table (YAML, the official "
                             'init_cmsr.py format; make one with scripts/make_cmsr_table.py): '
                             'beyond x4 each region is decoded at the lowest scale the table '
                             'allows (LMF models only; LMF\'s test.py uses --scale-max 4)')
    parser.add_argument('--metrics', type=parse_metrics, default=None, metavar='M,M',
                        help='psnr, ssim, lpips, dists, comma-separated; the first is the '
                             '`result:` line (default: psnr; ssim for eval_type ssim-<s>)')
    parser.add_argument('--protocol', choices=PROTOCOLS, default='liif',
                        help="liif (the official test.py's), basicsr (8-bit outputs, "
                             "BasicSR's PSNR and SSIM) or clit (CLIT's test.py) (default: "
                             "%(default)s)")
    parser.add_argument('--ciaosr-tiles', default=None, metavar='TILE,OVERLAP',
                        help="CiaoSR's tiled test at x <= 4: LR tiles and their overlap "
                             "(default 192,32 with --protocol ciaosr, else off), or none")
    parser.add_argument('--y-channel', action='store_true',
                        help='basicsr protocol: score the Y channel (BT.601), not RGB')
    parser.add_argument('--crop-border', type=number(int, 0), default=None, metavar='N',
                        help='basicsr protocol: pixels cropped off each side (default: the '
                             'scale of eval_type)')
    parser.add_argument('--self-ensemble', choices=sorted(MODES), default=None,
                        help="x8: EDSR's 8 flips and transposes; rot4: Thera's 4 rotations; "
                             'outputs turned back, averaged, clamped once (default: off)')
    parser.add_argument('--lr', choices=['pil', 'matlab'], default='pil',
                        help='how the x6+ configs make their LR from the HR: pil (official) '
                             "or matlab (MATLAB's bicubic, as the LR_bicubic files; integer "
                             'scales) (default: %(default)s)')
    parser.add_argument('--results', default=None, metavar='FILE.csv',
                        help="every image's scores as CSV, and a JSON summary beside it")
    parser.add_argument('--metric-weights', default=None, metavar='PATH',
                        help="lpips/dists: torchvision's ImageNet backbone weights (a file, or "
                             "the folder holding them; default: torch's hub cache)")
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Evaluates, prints the means (`result: NN.NNNN` last, as the official test.py) and
    writes --results."""
    device = resolve_device(args.device)
    print_precision_note(device, args.precision, not args.quiet)
    return_freed_memory()  # --max-memory: freed tensors go back to the system
    config, loader = test_loader(args.config, args.data_root, args.overrides, args.lr,
                                 num_workers(args, device.type), device)
    eval_type = config.get('eval_type')
    protocol = make_protocol(args.protocol, eval_type,
                             args.y_channel if args.protocol == 'basicsr' else None,
                             args.crop_border)
    tiles = parse_tiles(args.ciaosr_tiles, args.protocol)
    metrics = args.metrics or (('ssim',) if protocol.eval_type and
                               protocol.eval_type.startswith('ssim-') else ('psnr',))
    model, checkpoint_norm = load_decoder_and_norm(args.model, device)
    data_norm = config.get('data_norm')
    if model.own_data_norm is not None:  # CiaoSR: its normalisation is part of the model
        if data_norm not in (None, checkpoint_norm) and not args.quiet:
            print(f"note: {type(model).__name__} normalises with its checkpoint's data_norm "
                  f"{checkpoint_norm['inp']}, not the config's {data_norm['inp']}",
                  file=sys.stderr)
        data_norm = checkpoint_norm
    scale_max = SRNO_SCALE_MAX if args.mcell and args.scale_max is None else args.scale_max
    cmsr = tables_for(model, args.cmsr, args.model) if args.cmsr is not None else None
    renderer = Renderer(model, data_norm,
                        render_options(args, window=args.window, cmsr=cmsr))
    results = evaluate(loader, renderer, eval_type, config.get('eval_bsize'), scale_max,
                       metrics, protocol, args.self_ensemble, args.metric_weights,
                       verbose=not args.quiet, tiles=tiles)
    if args.results:
        write_results(args.results, results, eval_scale(eval_type), {
            'config': args.config, 'model': args.model, 'protocol': vars(protocol),
            'self_ensemble': args.self_ensemble, 'lr': args.lr})
    if len(metrics) > 1:
        print(', '.join(f'{m}: {results.mean(m):.4f}' for m in metrics[1:]))
    print(f'result: {results.mean(metrics[0]):.4f}')
    return 0


def write_results(path: str, results: Results, scale: Optional[int],
                  about: Dict[str, Any]) -> None:
    """The per-image CSV (`image,scale,<metric>,...`) and, beside it, a JSON summary (the
    means, the number of images and `about`), each written whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
        out = csv.writer(f)
        out.writerow(['image', 'scale', *results.metrics])
        for image, row in zip(results.images, results.rows):
            out.writerow([image, '' if scale is None else scale, *(f'{v:.8f}' for v in row)])
    summary = {**about, 'scale': scale, 'images': len(results.rows),
               'means': {m: results.mean(m) for m in results.metrics}}
    with atomic_path(os.path.splitext(path)[0] + '.json') as tmp, open(tmp, 'w') as f:
        json.dump(summary, f, indent=1)


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(partial(run, parse_args(argv)), 'interrupted; no result')


if __name__ == '__main__':
    sys.exit(main())
