"""Upscale one image to any size with an arbitrary-scale model: LIIF, MetaSR, LTE, lte-fast,
SRNO, LM-LIIF or LM-LTE (the checkpoint says which).

Renders the continuous image that LIIF decodes from the input at the requested size: any real
scale >= 1 (x1.7, x30), or any (H, W), the two axes independent. The output is decoded in bands
of rows; PNG and TIFF outputs are written to disk band by band, so memory stays bounded for
any output size (JPEG, WebP and BMP are encoded from memory, checked against --max-memory
first). The output file appears only when complete.

Images: PNG, JPEG, BMP, TIFF, WebP, shown as a viewer shows them (EXIF orientation applied).
Grayscale in gives grayscale out (the mean of the decoded RGB); an alpha channel is upscaled
with PIL bicubic resampling (LIIF decodes the colour only); 16-bit and float inputs give 16-bit
PNG or TIFF outputs (8 bits in other formats). ICC profiles are not carried over (a note says
so). The output format follows the output file's extension.

With no arguments it upscales the bundled sample (assets/astronaut-128.png) x4 with the
pretrained EDSR-baseline-LIIF (fetched by scripts/setup.sh).

Examples:
  python demo.py
  python demo.py --input photo.jpg --output photo_x3.5.png --scale 3.5
  python demo.py --input photo.png --output wide.png --resolution 600,1800 --device cpu
  python demo.py --model lmliif.pth --scale 12 --cmsr s2m-lmliif.yaml
"""
import argparse
import os
import signal
import sys
import threading
import time
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from inference import RenderOptions, Renderer, load_decoder_and_norm, window_of
from inference.cmsr import tables_for
from inference.memory import default_budget, describe, parse_memory
from utils import resolve_device
from utils.devices import PRECISIONS, precision_note
from utils.image_writer import check_output, output_bits, output_format, write_bands
from utils.images import is_srgb, read_image, resize_alpha

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INPUT = os.path.join(REPO, 'assets', 'astronaut-128.png')
DEFAULT_MODEL = os.path.join(REPO, 'pretrained', 'edsr-baseline-liif.pth')
DEFAULT_SCALE = '4'
PROGRESS_MIN_PIXELS = 1 << 20
ETA_PROBE_SECONDS = 5  # the time left is said once, after this long, if over ETA_MIN_SECONDS
ETA_MIN_SECONDS = 60


class DemoError(Exception):
    """A bad input or option, reported as one line."""


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', default=DEFAULT_INPUT, help='input image (default: the sample)')
    parser.add_argument('--output', default=None,
                        help='output image; its extension sets the format '
                             '(default: outputs/<input name>_<H>x<W>.png)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--resolution', default=None, metavar='H,W',
                      help='output height,width in pixels (the official form)')
    size.add_argument('--scale', default=None, metavar='S|SH,SW',
                      help=f'scale, one for both axes or height,width (default: {DEFAULT_SCALE})')
    parser.add_argument('--allow-downscale', action='store_true',
                        help='allow an output smaller than the input')
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help='checkpoint of LIIF, MetaSR, LTE, lte-fast or SRNO '
                             '(default: %(default)s)')
    parser.add_argument('--device', default='auto',
                        help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--chunk-size', '--tile', dest='chunk_size', type=int, default=None,
                        help='most output pixels decoded at once, in bands of whole rows '
                             '(default: the chunk policy of the device: 4096 queries per call '
                             'for the fast path on a CPU, bands of 65536 pixels; on a GPU as '
                             'many as its memory budget allows)')
    parser.add_argument('--max-memory', type=parse_memory, default=None,
                        help='working memory of the model (on its device), e.g. 1GB: inputs '
                             'too large to run whole are encoded in tiles and decoded in '
                             'bands sized to fit, with the same output (default: half the '
                             "memory available, or 80%% of the GPU's free memory)")
    parser.add_argument('--encoder-tile', type=int, default=0, metavar='N',
                        help='force encoder tiles of N x N codes and latent bands of N rows '
                             '(same output); 0 lets --max-memory decide (default: 0)')
    parser.add_argument('--impl', choices=['fast', 'reference'], default='fast',
                        help='query path (default: %(default)s)')
    parser.add_argument('--precision', choices=list(PRECISIONS), default='fp32',
                        help='fp32, or bf16/fp16 autocast for the decoder (default: %(default)s)')
    parser.add_argument('--compile', action='store_true',
                        help='run the decoder under torch.compile: compiles on the first chunk '
                             '(about 10-30 s on a CPU, once per image size; cached on disk by '
                             'torch), then faster (1.4x to 1.5x in bf16 on our CPU); falls back '
                             'with a warning where it cannot compile')
    parser.add_argument('--cmsr', default=None, metavar='TABLE',
                        help="LMF models: CMSR with this scale-to-mean table (YAML, from "
                             'scripts/make_cmsr_table.py): beyond x4 each region is decoded at '
                             'the lowest scale the table allows; the output is rendered whole '
                             '(not in bands), so it needs memory for all of it')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow the output to replace the input file')
    parser.add_argument('--quiet', action='store_true', help='no progress bar or notes')
    return parser.parse_args(argv)


def output_size(args: argparse.Namespace, h: int, w: int) -> Tuple[int, int]:
    """(H, W) from --resolution or --scale, checked."""
    if args.resolution is not None:
        try:
            H, W = (int(v) for v in args.resolution.split(','))
        except ValueError:
            raise DemoError(f"--resolution must be H,W in pixels, got '{args.resolution}'")
    else:
        text = args.scale if args.scale is not None else DEFAULT_SCALE
        try:
            scales = [float(v) for v in text.split(',')]
        except ValueError:
            raise DemoError(f"--scale must be a number or SH,SW, got '{text}'")
        if len(scales) not in (1, 2) or not all(np.isfinite(s) and s > 0 for s in scales):
            raise DemoError(f"--scale must be one or two positive numbers, got '{text}'")
        sh, sw = scales * 2 if len(scales) == 1 else scales
        if min(sh, sw) < 1 and not args.allow_downscale:
            raise DemoError(f"--scale {text} is below 1; LIIF is for upscaling "
                            "(pass --allow-downscale to render smaller anyway)")
        H, W = round(h * sh), round(w * sw)
    if H <= 0 or W <= 0:
        raise DemoError(f"output size must be positive, got {W}x{H}")
    if (H < h or W < w) and not args.allow_downscale:
        raise DemoError(f"output {W}x{H} is smaller than the {w}x{h} input on at least one "
                        "axis (pass --allow-downscale to allow it)")
    return H, W


def load_renderer(args: argparse.Namespace, device: torch.device) -> Renderer:
    """The checkpoint's model and data_norm, with the options of the command line."""
    if not os.path.isfile(args.model):
        hint = ' (run bash scripts/setup.sh to fetch it)' if args.model == DEFAULT_MODEL else ''
        raise DemoError(f"checkpoint not found: {args.model}{hint}")
    model, data_norm = load_decoder_and_norm(args.model, device)
    tile = args.encoder_tile or None
    cmsr = tables_for(model, args.cmsr, args.model) if args.cmsr is not None else None
    return Renderer(model, data_norm, RenderOptions(
        impl=args.impl, precision=args.precision, chunk_size=args.chunk_size,
        window=window_of(model) or 0, encoder_tile=tile, band_rows=tile,
        max_memory=args.max_memory, compile=args.compile, cmsr=cmsr))


def same_file(a: str, b: str) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def eta_note(done: int, total: int, elapsed: float) -> Optional[str]:
    """One line with the time left, once the first rows say it is over a minute."""
    left = elapsed * (total - done) / max(done, 1)
    if left < ETA_MIN_SECONDS:
        return None
    hours, rest = divmod(int(left), 3600)
    return (f'about {hours} h {rest // 60:02d} min left at this speed '
            '(Ctrl-C stops it; no file is written then)')


def run(args: argparse.Namespace) -> str:
    """Renders and writes the output; returns the sentence to print."""
    if args.chunk_size is not None and args.chunk_size < 1:
        raise DemoError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.encoder_tile < 0:
        raise DemoError(f"--encoder-tile must be >= 0, got {args.encoder_tile}")
    device = resolve_device(args.device)
    note = precision_note(device, args.precision)
    if note and not args.quiet:
        print(note, file=sys.stderr)
    host_budget = args.max_memory or default_budget(torch.device('cpu'))
    image = read_image(args.input, max_bytes=host_budget)
    h, w = image.rgb.shape[:2]
    H, W = output_size(args, h, w)
    output = args.output
    default_folder = args.output is None
    if output is None:
        stem = os.path.splitext(os.path.basename(args.input))[0]
        output = os.path.join('outputs', f'{stem}_{H}x{W}.png')
    planes = (1 if image.gray else 3) + (image.alpha is not None)
    fmt = output_format(output)
    bits = output_bits(fmt, image.bits)
    # The default folder is made only once the render starts: its parent is checked now.
    check_output(os.path.basename(output) if default_folder and not os.path.isdir('outputs')
                 else output, (H, W), planes, bits, host_budget)
    if same_file(output, args.input) and not args.overwrite:
        raise DemoError(f"the output {output} is the input file; pass --overwrite to replace it")
    if os.path.exists(output) and not os.path.isfile(output):
        raise DemoError(f"output is not a regular file: {output}")
    if os.path.isfile(output) and not os.stat(output).st_mode & 0o222 and not args.overwrite:
        raise DemoError(f"the output {output} is write-protected; pass --overwrite to replace "
                        "it anyway")
    renderer = load_renderer(args, device)
    plan = renderer.plan(renderer.padded_size((h, w)), True, device)
    if not args.quiet:
        if plan.encoder_tile is not None:
            print(f'{w}x{h} input: {describe(plan)}', file=sys.stderr)
        if bits < image.bits:
            print(f'note: {fmt.name} holds 8 bits; the {image.bits}-bit input is written at 8 '
                  '(use .png or .tif to keep 16)', file=sys.stderr)
        if not is_srgb(image.icc):
            print('note: the input has a non-sRGB ICC profile; the output is written without '
                  'one (samples as decoded)', file=sys.stderr)

    rgb = torch.from_numpy(image.rgb).permute(2, 0, 1).unsqueeze(0).to(device)
    levels = 2 ** bits - 1
    dtype = np.uint16 if bits == 16 else np.uint8

    def bands() -> Iterator[np.ndarray]:
        start, eta_said = time.monotonic(), args.quiet
        with tqdm(total=H, unit='row', desc=f'{w}x{h} -> {W}x{H}',
                  disable=args.quiet or H * W < PROGRESS_MIN_PIXELS) as bar:
            for row0, band in renderer.bands(rgb, (H, W), plan):
                rows = band.shape[0]
                if not torch.isfinite(band).all():
                    raise DemoError(f"the model's output is not finite (NaN or inf) in rows "
                                    f"{row0}-{row0 + rows - 1}; no file written")
                if image.gray:  # the decoded channels of a gray input differ only slightly
                    band = band.mean(dim=2, keepdim=True)
                samples = (band * levels).round_().numpy().astype(dtype)
                if image.alpha is not None:
                    alpha = resize_alpha(image.alpha, (H, W), (row0, row0 + rows))
                    samples = np.concatenate(
                        [samples, (alpha * levels).round().astype(dtype)[..., None]], axis=2)
                yield samples
                bar.update(rows)
                elapsed = time.monotonic() - start
                if not eta_said and elapsed > ETA_PROBE_SECONDS:
                    eta_said = True
                    note = eta_note(row0 + rows, H, elapsed)
                    if note:
                        tqdm.write(note, file=sys.stderr)

    if default_folder:
        os.makedirs('outputs', exist_ok=True)  # only once the render can start
    write_bands(output, (H, W), planes, bits, bands())
    return f"wrote {output} ({W}x{H} from {w}x{h})"


def stop_on_sigterm(signum, frame):
    """SIGTERM (a job scheduler, `kill`) ends the render like Ctrl-C: no file left behind."""
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm) if in_main else None
    try:
        print(run(args))
    except (DemoError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == '__main__':
    sys.exit(main())
