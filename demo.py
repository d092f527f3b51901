"""Upscale one image to any size with an arbitrary-scale model: LIIF, MetaSR, LTE, lte-fast,
SRNO, LM-LIIF, LM-LTE, CLIT or CiaoSR (the checkpoint says which; CiaoSR's released files
load as they are).

Renders the continuous image that LIIF decodes from the input at the requested size: any real
scale >= 1 (x1.7, x30), or any (H, W), the two axes independent. The output is decoded in bands
of rows; PNG and TIFF outputs are written to disk band by band, so memory stays bounded for
any output size (JPEG, WebP and BMP are encoded from memory, checked against --max-memory
first). The output file appears only when complete.

Images: PNG, JPEG, BMP, TIFF, WebP, shown as a viewer shows them (EXIF orientation applied).
Grayscale in gives grayscale out (the mean of the decoded RGB); an alpha channel is upscaled
with PIL bicubic resampling (LIIF decodes the colour only); 16-bit and float inputs give 16-bit
PNG or TIFF outputs (8 bits in other formats). ICC profiles are not carried over (a note says
so). The output format follows the output file's extension. --max-memory bounds the whole
process (beyond the interpreter): one memory plan (inference.plan) sizes the encoder's tiles,
the latent bands, the decoder's calls and the output bands to it; the line it prints says
what runs.

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
import sys
import time
from functools import partial
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from inference import Plan, Renderer, describe, load_decoder_and_norm
from inference.plan import default_budget
from inference.bands import Progress
from inference.cmsr import tables_for
from inference.options import CHUNK_SIZE, RENDER_FLAGS, render_options
from utils import resolve_device
from utils.cli import DEVICE, ArgumentParser, run_main
from utils.devices import print_precision_note, return_freed_memory
from utils.image_io import ImageData, check_output, is_srgb, read_image, resize_alpha
from utils.image_io.write import (NO_SIDE_LIMIT, memory_needed, output_bits, output_format,
                                   write_bands)

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INPUT = os.path.join(REPO, 'assets', 'astronaut-128.png')
DEFAULT_MODEL = os.path.join(REPO, 'pretrained', 'edsr-baseline-liif.pth')
DEFAULT_SCALE = '4'
PROGRESS_MIN_PIXELS = 1 << 20
ETA_PROBE_SECONDS = 5  # the time left is said once the rates are known, this long in,
ETA_MIN_SECONDS = 60   # if over a minute


class DemoError(ValueError):
    """A bad input or option, reported as one line."""


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
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
                        help='checkpoint of LIIF, MetaSR, LTE, lte-fast, SRNO, LM-LIIF or '
                             'LM-LTE (default: %(default)s)')
    for names, spec in (DEVICE, *RENDER_FLAGS, CHUNK_SIZE):
        parser.add_argument(*names, **spec)
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
        if max(h * sh, w * sw) > NO_SIDE_LIMIT:
            raise DemoError(f"--scale {text} asks for {w * sw:.3g}x{h * sh:.3g} pixels: no "
                            "format holds it: ask for a smaller --scale or --resolution")
        H, W = round(h * sh), round(w * sw)
    if H <= 0 or W <= 0:
        raise DemoError(f"output size must be positive, got {W}x{H}")
    if (H < h or W < w) and not args.allow_downscale:
        raise DemoError(f"output {W}x{H} is smaller than the {w}x{h} input on at least one "
                        "axis (pass --allow-downscale to allow it)")
    return H, W


def check_destination(args: argparse.Namespace, image: ImageData, size: Tuple[int, int],
                      budget: float) -> Tuple[str, int, int, int]:
    """The output path (outputs/ made later, when the render starts) checked before any
    pixel is decoded; returns (path, planes, bits, bytes its writer holds)."""
    output = args.output
    if output is None:
        stem = os.path.splitext(os.path.basename(args.input))[0]
        output = os.path.join('outputs', f'{stem}_{size[0]}x{size[1]}.png')
    planes = (1 if image.gray else 3) + (image.alpha is not None)
    bits = output_bits(output_format(output), image.bits)
    default_folder = args.output is None and not os.path.isdir('outputs')
    fmt = check_output(os.path.basename(output) if default_folder else output, size, planes,
                       bits, budget)
    if os.path.exists(output) and os.path.exists(args.input) and \
            os.path.samefile(output, args.input) and not args.overwrite:
        raise DemoError(f"the output {output} is the input file; pass --overwrite to replace it")
    if os.path.exists(output) and not os.path.isfile(output):
        raise DemoError(f"output is not a regular file: {output}")
    if os.path.isfile(output) and not os.stat(output).st_mode & 0o222 and not args.overwrite:
        raise DemoError(f"the output {output} is write-protected; pass --overwrite to replace "
                        "it anyway")
    if not args.quiet and bits < image.bits:
        print(f'note: {fmt.name} holds 8 bits; the {image.bits}-bit input is written at 8 '
              '(use .png or .tif to keep 16)', file=sys.stderr)
    return output, planes, bits, memory_needed(fmt, size, planes, bits)


def load_renderer(args: argparse.Namespace, device: torch.device) -> Renderer:
    """The checkpoint's model and data_norm, with the options of the command line."""
    if not os.path.isfile(args.model):
        hint = ' (run bash scripts/setup.sh to fetch it)' if args.model == DEFAULT_MODEL else ''
        raise DemoError(f"checkpoint not found: {args.model}{hint}")
    model, data_norm = load_decoder_and_norm(args.model, device)
    cmsr = tables_for(model, args.cmsr, args.model) if args.cmsr is not None else None
    return Renderer(model, data_norm, render_options(args, bands=True,
                                                     window=model.encoder_window, cmsr=cmsr))


def samples(renderer: Renderer, image: ImageData, size: Tuple[int, int], plan: Plan,
            bits: int, device: torch.device, quiet: bool) -> Iterator[np.ndarray]:
    """The output's bands of rows as the samples written ((rows, W, planes) uint8 or uint16),
    with a progress bar and, once the rates are known, the time left."""
    H, W = size
    h, w = image.rgb.shape[:2]
    levels, dtype = 2 ** bits - 1, np.uint16 if bits == 16 else np.uint8
    rgb = torch.from_numpy(image.rgb).permute(2, 0, 1).unsqueeze(0).to(device)
    progress, start, eta_said = Progress(), time.monotonic(), quiet
    with tqdm(total=H, unit='row', desc=f'{w}x{h} -> {W}x{H}',
              disable=quiet or H * W < PROGRESS_MIN_PIXELS) as bar:
        for row0, band in renderer.bands(rgb, size, plan, progress):
            rows = band.shape[0]
            if not torch.isfinite(band).all():
                raise DemoError(f"the model's output is not finite (NaN or inf) in rows "
                                f"{row0}-{row0 + rows - 1}; no file written")
            if image.gray:  # the decoded channels of a gray input differ only slightly
                band = band.mean(dim=2, keepdim=True)
            out = band.mul_(levels).round_().numpy().astype(dtype)
            if image.alpha is not None:
                alpha = resize_alpha(image.alpha, size, (row0, row0 + rows))
                out = np.concatenate([out, (alpha * levels).round().astype(dtype)[..., None]],
                                     axis=2)
            yield out
            bar.update(rows)
            left = progress.seconds_left()
            if not eta_said and left is not None and time.monotonic() - start > ETA_PROBE_SECONDS:
                eta_said = True
                if left > ETA_MIN_SECONDS:
                    hours, rest = divmod(int(left), 3600)
                    tqdm.write(f'about {hours} h {rest // 60:02d} min left at this speed '
                               '(Ctrl-C stops it; no file is written then)', file=sys.stderr)


def upscale(args: argparse.Namespace) -> int:
    """load -> plan -> render -> write, then one line saying what was written."""
    device = resolve_device(args.device)
    print_precision_note(device, args.precision, not args.quiet)
    return_freed_memory()
    budget = args.max_memory or default_budget(torch.device('cpu'))
    image = read_image(args.input, max_bytes=budget)
    h, w = image.rgb.shape[:2]
    size = output_size(args, h, w)
    output, planes, bits, writer_bytes = check_destination(args, image, size, budget)
    renderer = load_renderer(args, device)
    held = image.rgb.nbytes + (0 if image.alpha is None else image.alpha.nbytes) + writer_bytes
    plan = renderer.plan((h, w), device, size, held)
    if not args.quiet:
        print(f'{w}x{h} -> {size[1]}x{size[0]}: {describe(plan)}', file=sys.stderr)
        if not is_srgb(image.icc):
            print('note: the input has a non-sRGB ICC profile; the output is written without '
                  'one (samples as decoded)', file=sys.stderr)
    if args.output is None:
        os.makedirs('outputs', exist_ok=True)  # only once the render can start
    write_bands(output, size, planes, bits,
                samples(renderer, image, size, plan, bits, device, args.quiet))
    print(f"wrote {output} ({size[1]}x{size[0]} from {w}x{h})")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(partial(upscale, parse_args(argv)), 'interrupted; no output written')


if __name__ == '__main__':
    sys.exit(main())
