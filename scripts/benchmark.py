"""A paper's results table in one command: checkpoints x test sets x scales x metrics, as
Markdown and CSV, the protocol named in the header, and an efficiency table (parameters,
multiply-adds per output pixel, latency, peak memory at LMF's 320x180 -> x4).

Each image's scores are cached as soon as they are known (OUT/cache/...), keyed by the
checkpoint's content and every setting that changes a score; a rerun (or a run after an
interruption) computes only what is missing. Test sets are the configs
configs/test/test-<set>-<scale>.yaml, paths under ./load re-rooted with --data-root.

By default: the layout of the LIIF paper's Table 1 (DIV2K val, x2 x3 x4 x6 x12 x18 x24 x30) when
DIV2K is present, else its Table 2's (Set5, Set14, B100, Urban100 where present, x2 x3 x4 x6
x8 x12), PSNR and SSIM with LIIF's protocol.

Examples:
  python scripts/benchmark.py --model pretrained/edsr-baseline-liif.pth --data-root ../shared/data
  python scripts/benchmark.py --model pretrained/edsr-baseline-liif.pth --sets set5 set14 b100 \\
      --scales 2 3 4 6 8 12 --protocol basicsr --y-channel --data-root ../shared/data
  python scripts/benchmark.py --model configs/train-div2k/train_edsr-baseline-lte.yaml \\
      --no-scores   # efficiency alone, random weights (a model spec, not a checkpoint)
"""
import argparse
import csv
import hashlib
import json
import os
import platform
import sys
from typing import Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from datasets import DATASETS  # noqa: E402
from inference import Renderer, load_decoder_and_norm  # noqa: E402
from inference.efficiency import LMF_INPUT, LMF_SCALE, Efficiency, measure_efficiency  # noqa
from inference.evaluation import evaluate, test_loader  # noqa: E402
from inference.loading import is_checkpoint, load_decoder_or_spec  # noqa: E402
from inference.options import RENDER_FLAGS, render_options  # noqa: E402
from inference.self_ensemble import MODES  # noqa: E402
from utils import resolve_device  # noqa: E402
from utils.cli import (DATA_ROOT, DEVICE, NUM_WORKERS, ArgumentParser, num_workers,  # noqa: E402
                       number, run_main)
from utils.config import read_config, test_schema  # noqa: E402
from utils.files import atomic_path  # noqa: E402
from utils.metrics import PROTOCOLS, make_protocol, parse_metrics, protocol_note  # noqa: E402

TABLE_1 = ('div2k', (2, 3, 4, 6, 12, 18, 24, 30))                 # LIIF, Table 1
TABLE_2 = (('set5', 'set14', 'b100', 'urban100'), (2, 3, 4, 6, 8, 12))  # LIIF, Table 2
WIDE_SETS = ('div2k', 'lsdir')  # sets with Table 1's scales
TRAINED_MAX = 4  # the training scales are x1-x4: the scales beyond are marked


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--model', nargs='+', required=True,
                        help="checkpoints (.pth), 'bicubic', or with --no-scores model specs "
                             '(YAML {name, args} or a training config; random weights)')
    parser.add_argument('--names', nargs='+', default=None,
                        help="the methods' names in the table (default: the file stems)")
    parser.add_argument('--sets', nargs='+', default=None,
                        help='test sets (configs/test/test-<set>-<scale>.yaml): div2k, set5, '
                             'set14, b100, urban100, manga109, general100, lsdir (default: '
                             'div2k if present, else the benchmark sets present)')
    parser.add_argument('--scales', nargs='+', type=number(int, 1), default=None,
                        help='scales (default: 2 3 4 6 12 18 24 30 for div2k and lsdir, '
                             '2 3 4 6 8 12 for the others)')
    parser.add_argument('--metrics', type=parse_metrics, default=('psnr', 'ssim'),
                        metavar='M,M', help='psnr, ssim, lpips, dists (default: psnr,ssim)')
    parser.add_argument('--protocol', choices=PROTOCOLS, default='liif',
                        help='as test.py (default: %(default)s)')
    parser.add_argument('--y-channel', action='store_true', help='basicsr: the Y channel')
    parser.add_argument('--crop-border', type=number(int, 0), default=None, metavar='N',
                        help='basicsr: pixels cropped off each side (default: the scale)')
    parser.add_argument('--self-ensemble', choices=sorted(MODES), default=None,
                        help='x8 or rot4, as test.py (default: off)')
    parser.add_argument('--lr', choices=['pil', 'matlab'], default='pil',
                        help='LR of the x6+ configs, as test.py (default: %(default)s)')
    parser.add_argument('--scale-max', type=number(float, 0, above=True), default=None, metavar='S',
                        help="LTE's cell clipping, as test.py (LTE, SRNO and LMF use 4; "
                             'default: off, as LIIF)')
    parser.add_argument('--window', type=number(int, 0), default=0, metavar='N',
                        help="LTE's SwinIR protocol, as test.py (default: 0, off)")
    parser.add_argument('--metric-weights', default=None, metavar='PATH',
                        help='lpips/dists backbone weights, as test.py')
    parser.add_argument('--out', default='benchmark', metavar='DIR',
                        help='writes DIR/results.md, DIR/results.csv and the cache DIR/cache '
                             '(default: %(default)s)')
    parser.add_argument('--no-scores', action='store_true', help='the efficiency table alone')
    parser.add_argument('--no-efficiency', action='store_true', help='no efficiency table')
    parser.add_argument('--repeats', type=number(int, 1), default=5,
                        help='efficiency: timed renders after the warm-up (default: 5)')
    for names, spec in (DATA_ROOT, DEVICE, NUM_WORKERS, *RENDER_FLAGS):
        parser.add_argument(*names, **spec)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def config_of(set_name: str, scale: int) -> str:
    """configs/test/test-<set>-<scale>.yaml, or ValueError naming the scales the set has."""
    path = os.path.join(REPO, 'configs', 'test', f'test-{set_name}-{scale}.yaml')
    if not os.path.isfile(path):
        prefix = f'test-{set_name}-'
        have = sorted(int(f[len(prefix):-5]) for f in os.listdir(os.path.dirname(path))
                      if f.startswith(prefix) and f[len(prefix):-5].isdigit())
        raise ValueError(f"no test config for set '{set_name}' at x{scale} ({path}); "
                         + (f"it has x{', x'.join(map(str, have))}" if have else
                            'sets: div2k, set5, set14, b100, urban100, manga109, general100, '
                            'lsdir'))
    return path


def present(set_name: str, scale: int, data_root: Optional[str]) -> bool:
    """Whether the image folders of a set's config (re-rooted at `data_root`) are on disk."""
    config = read_config(config_of(set_name, scale), (), test_schema(DATASETS), data_root)
    args = config['test_dataset']['dataset']['args']
    return all(os.path.isdir(v) for k, v in args.items() if k.startswith('root_path'))


def grid(args: argparse.Namespace) -> List[Tuple[str, int]]:
    """The (set, scale) cells of the table."""
    sets = args.sets
    if sets is None:
        sets = [TABLE_1[0]] if present(TABLE_1[0], 2, args.data_root) else \
            [s for s in TABLE_2[0] if present(s, 2, args.data_root)]
        if not sets:
            raise ValueError('no test set found under the data root (--data-root, or '
                             '$LIIF_DATA_ROOT, else ./load); see docs/data.md, or name --sets')
    cells = []
    for set_name in sets:
        scales = args.scales or (TABLE_1[1] if set_name in WIDE_SETS else TABLE_2[1])
        for scale in scales:
            config_of(set_name, scale)  # a missing config fails before any work
            cells.append((set_name, scale))
    return cells


def fingerprint(path: str) -> str:
    """12 hex digits of the SHA-256 of a file's bytes ('bicubic': the name)."""
    if path == 'bicubic' and not os.path.exists(path):
        return 'bicubic'
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()[:12]


def settings_key(args: argparse.Namespace) -> Dict:
    """Every setting that changes a score (the cache's key)."""
    return {'metrics': list(args.metrics), 'protocol': args.protocol,
            'y_channel': args.y_channel, 'crop_border': args.crop_border,
            'self_ensemble': args.self_ensemble, 'lr': args.lr, 'impl': args.impl,
            'precision': args.precision, 'scale_max': args.scale_max, 'window': args.window,
            'data_root': os.path.realpath(args.data_root) if args.data_root else None}


def cache_folder(root: str, model_path: str, settings: Dict) -> str:
    """root/<model stem>-<its fingerprint>/<the settings' hash>, made, its settings.json
    written (for whoever reads the cache)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(model_path))[0]
    folder = os.path.join(root, f'{stem}-{fingerprint(model_path)}', key)
    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, 'settings.json')) as tmp, open(tmp, 'w') as f:
        json.dump({'model': model_path, **settings}, f, indent=1)
    return folder


class Cache:
    """Per-image scores of one model under one set of settings: a folder of CSV files, one per
    (set, scale), each row appended and flushed as soon as it is known (a torn last row, from
    an interrupted run, is ignored)."""

    def __init__(self, root: str, model_path: str, settings: Dict):
        self.folder = cache_folder(root, model_path, settings)
        self.metrics = settings['metrics']

    def path(self, set_name: str, scale: int) -> str:
        return os.path.join(self.folder, f'{set_name}-x{scale}.csv')

    def read(self, set_name: str, scale: int) -> Dict[str, List[float]]:
        """{image: scores} cached for a cell."""
        rows = {}
        if os.path.exists(self.path(set_name, scale)):
            with open(self.path(set_name, scale), newline='') as f:
                for row in csv.reader(f):
                    if len(row) != 1 + len(self.metrics) or row[0] == 'image':
                        continue
                    try:
                        rows[row[0]] = [float(v) for v in row[1:]]
                    except ValueError:
                        continue
        return rows

    def append(self, set_name: str, scale: int, image: str, scores: List[float]) -> None:
        path = self.path(set_name, scale)
        lines = [] if os.path.exists(path) else [','.join(['image', *self.metrics])]
        lines.append(','.join([image, *(repr(v) for v in scores)]))
        with open(path, 'a+b') as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b'\n':  # a torn row: ours starts on a line of its own
                    lines.insert(0, '')
            f.write(('\n'.join(lines) + '\n').encode())
            f.flush()


def score(args: argparse.Namespace, models: List[Tuple[str, str]], cells, device
          ) -> Dict[Tuple[str, str, int], Dict[str, List[float]]]:
    """{(method, set, scale): {image: scores}}: the cached scores, and the missing ones
    computed (one progress bar over the images left, with its ETA)."""
    settings = settings_key(args)
    todo, scores = [], {}
    for name, path in models:
        cache = Cache(os.path.join(args.out, 'cache'), path, settings)
        for set_name, scale in cells:
            config, loader = test_loader(config_of(set_name, scale), args.data_root, (),
                                         args.lr, num_workers(args, device.type), device)
            done = cache.read(set_name, scale)
            scores[name, set_name, scale] = done
            left = len(loader.dataset) - len(done)
            if left > 0:
                todo.append((name, path, cache, set_name, scale, config, loader, left))
    pbar = tqdm(total=sum(t[-1] for t in todo), unit='image', disable=args.quiet)
    loaded: Dict[str, Renderer] = {}
    for name, path, cache, set_name, scale, config, loader, _ in todo:
        if path not in loaded:
            model, norm = load_decoder_and_norm(path, device)
            loaded[path] = Renderer(model, norm, render_options(args, window=args.window))
        pbar.set_description(f'{name} {set_name} x{scale}')
        done = scores[name, set_name, scale]

        def keep(image, values, cache=cache, set_name=set_name, scale=scale, done=done):
            cache.append(set_name, scale, image, values)
            done[image] = values
            pbar.update(1)
        evaluate(loader, loaded[path], config.get('eval_type'), config.get('eval_bsize'),
                 args.scale_max, metrics=args.metrics, protocol=make_protocol(
                     args.protocol, config.get('eval_type'),
                     args.y_channel if args.protocol == 'basicsr' else None, args.crop_border),
                 self_ensemble=args.self_ensemble, metric_weights=args.metric_weights,
                 skip=set(done), on_image=keep)
    pbar.close()
    return scores


def efficiency(args: argparse.Namespace, models: List[Tuple[str, str]], device
               ) -> Dict[str, Efficiency]:
    """{method: Efficiency}, cached per model, device and path like the scores."""
    rows = {}
    for name, path in models:
        key = {'impl': args.impl, 'precision': args.precision, 'device': hardware(device),
               'torch': torch.__version__, 'repeats': args.repeats}
        folder = cache_folder(os.path.join(args.out, 'cache'), path, key)
        cached = os.path.join(folder, 'efficiency.json')
        if os.path.exists(cached):
            with open(cached) as f:
                rows[name] = Efficiency(**{**json.load(f)})
            continue
        print(f'timing {name} ...', file=sys.stderr)
        model, norm = load_decoder_or_spec(path, device)
        rows[name] = measure_efficiency(
            Renderer(model, norm, render_options(args, window=args.window)), device,
            args.repeats)
        with atomic_path(cached) as tmp, open(tmp, 'w') as f:
            json.dump(vars(rows[name]), f)
    return rows


def hardware(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's model and torch's thread count."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu}, {torch.get_num_threads()} threads'


def tables(args, models, cells, scores, eff, device) -> Tuple[str, List[List]]:
    """(the Markdown, the CSV rows) of the results."""
    md, rows = [], [['set', 'method', 'scale', 'metric', 'mean', 'images']]
    if cells:
        metric_names = '/'.join(m.upper() for m in args.metrics)
        md.append(f'### {metric_names}, protocol {args.protocol}: '
                  + protocol_note(args.protocol, args.y_channel, args.crop_border))
        extras = [f'self-ensemble {args.self_ensemble}'] if args.self_ensemble else []
        extras.append(f'LR beyond the LR_bicubic folders: {args.lr}')
        md.append(f'({"; ".join(extras)}; * beyond the training scales x1-x{TRAINED_MAX})\n')
        scales = sorted({s for _, s in cells})
        md.append('| Set | Method | ' + ' | '.join(
            f'x{s}{"*" if s > TRAINED_MAX else ""}' for s in scales) + ' |')
        md.append('|---|---|' + '---|' * len(scales))
        for set_name in dict.fromkeys(s for s, _ in cells):
            for name, _ in models:
                line = []
                for s in scales:
                    done = scores.get((name, set_name, s))
                    if not done:
                        line.append('-')
                        continue
                    means = [sum(v[i] for v in done.values()) / len(done)
                             for i in range(len(args.metrics))]
                    line.append(' / '.join(f'{m:.4f}' for m in means))
                    rows += [[set_name, name, s, m, f'{v:.6f}', len(done)]
                             for m, v in zip(args.metrics, means)]
                md.append(f'| {set_name} | {name} | ' + ' | '.join(line) + ' |')
    if eff:
        h, w = LMF_INPUT
        md.append(f'\n### Efficiency: {w}x{h} input -> x{LMF_SCALE} ({w * LMF_SCALE}x'
                  f'{h * LMF_SCALE}), {hardware(device)}, torch {torch.__version__}, '
                  f'{args.impl} path, {args.precision}; latency: median of {args.repeats} '
                  'after a warm-up\n')
        md.append('| Method | Params (M) | MACs per output pixel (K) | GMACs | Latency (ms) '
                  '| Peak memory (MB) |')
        md.append('|---|---|---|---|---|---|')
        for name, e in eff.items():
            pixels = e.input[0] * e.input[1] * e.scale ** 2
            md.append(f'| {name} | {e.params / 1e6:.3f} | {e.macs_per_pixel / 1e3:.1f} | '
                      f'{e.macs_per_pixel * pixels / 1e9:.1f} | {e.seconds * 1e3:.0f} | '
                      f'{e.peak_mb:.0f} |')
            rows += [['efficiency', name, e.scale, k, v, ''] for k, v in (
                ('params', e.params), ('macs_per_pixel', f'{e.macs_per_pixel:.1f}'),
                ('latency_ms', f'{e.seconds * 1e3:.2f}'), ('peak_mb', f'{e.peak_mb:.1f}'))]
    return '\n'.join(md), rows


def bench(args: argparse.Namespace) -> int:
    """Scores what is missing, writes OUT/results.md and OUT/results.csv, prints the table."""
    if args.names and len(args.names) != len(args.model):
        raise ValueError(f"--names gives {len(args.names)} names for {len(args.model)} models")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    specs = [p for p in args.model if not is_checkpoint(p)]
    if specs and not args.no_scores:
        raise ValueError(f"{specs[0]} is a model spec (random weights): its scores mean "
                         "nothing; pass --no-scores for its efficiency alone, or a checkpoint")
    names = args.names or [os.path.splitext(os.path.basename(p))[0] for p in args.model]
    models = list(zip(names, args.model))
    device = resolve_device(args.device)
    make_protocol(args.protocol, 'benchmark-4', args.y_channel if args.protocol == 'basicsr'
                  else None, args.crop_border)  # a bad protocol fails before any work
    cells = [] if args.no_scores else grid(args)
    scores = score(args, models, cells, device) if cells else {}
    eff = {} if args.no_efficiency else efficiency(args, models, device)
    markdown, rows = tables(args, models, cells, scores, eff, device)
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, 'results.md')) as tmp, open(tmp, 'w') as f:
        f.write(markdown + '\n')
    with atomic_path(os.path.join(args.out, 'results.csv')) as tmp, \
            open(tmp, 'w', newline='') as f:
        csv.writer(f).writerows(rows)
    print(markdown)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(lambda: bench(parse_args(argv)), 'interrupted; the cache keeps every '
                    'image scored so far')


if __name__ == '__main__':
    sys.exit(main())
