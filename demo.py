"""Upscale one image to any size with a LIIF model.

Renders the continuous image that LIIF decodes from the input at the requested size: any real
scale >= 1 (x1.7, x30), or any (H, W), the two axes independent. The output is decoded in bands
of rows, so memory stays bounded for huge outputs, and written only when complete.

Images: PNG, JPEG, BMP, TIFF, WebP. Grayscale in gives grayscale out (the mean of the decoded
RGB); an alpha channel is upscaled with PIL bicubic resampling (LIIF decodes the colour only);
16-bit PNGs keep 16 bits. The output format follows the output file's extension.

With no arguments it upscales the bundled sample (assets/astronaut-128.png) x4 with the
pretrained EDSR-baseline-LIIF (fetched by scripts/setup.sh).

Examples:
  python demo.py
  python demo.py --input photo.jpg --output photo_x3.5.png --scale 3.5
  python demo.py --input photo.png --output wide.png --resolution 600,1800 --device cpu
"""
import argparse
import os
import sys
import tempfile
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

import models
from utils import load_checkpoint, resolve_device
from utils.render import render_bands

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INPUT = os.path.join(REPO, 'assets', 'astronaut-128.png')
DEFAULT_MODEL = os.path.join(REPO, 'pretrained', 'edsr-baseline-liif.pth')
DEFAULT_SCALE = 4.0
# Working memory of one query on the fast path of a 256-wide decoder (activations of the
# chunk, four ensemble members, coordinates), used to turn --max-memory into a tile size.
BYTES_PER_QUERY = 8 * 1024
PROGRESS_MIN_PIXELS = 1 << 20
MEMORY_UNITS = {'': 1, 'B': 1, 'K': 2 ** 10, 'KB': 2 ** 10, 'M': 2 ** 20, 'MB': 2 ** 20,
                'G': 2 ** 30, 'GB': 2 ** 30}


class DemoError(Exception):
    """A bad input or option, reported as one line."""


def parse_size(text: str) -> int:
    value = text.strip().upper()
    number = value.rstrip('KMGB')
    unit = value[len(number):]
    try:
        size = float(number) * MEMORY_UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"bad memory size '{text}'; e.g. 512MB or 2GB")
    if size <= 0:
        raise argparse.ArgumentTypeError(f"memory size must be positive, got '{text}'")
    return int(size)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', default=DEFAULT_INPUT, help='input image (default: the sample)')
    parser.add_argument('--output', default=None,
                        help='output image; the extension sets the format '
                             '(default: outputs/<input name>_x<scale>.png)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--resolution', default=None, metavar='H,W',
                      help='output height,width in pixels (official form)')
    size.add_argument('--scale', default=None, metavar='S or SH,SW',
                      help=f'scale factor, one for both axes or height,width '
                           f'(default: {DEFAULT_SCALE:g})')
    parser.add_argument('--allow-downscale', action='store_true',
                        help='allow output sizes smaller than the input')
    parser.add_argument('--model', default=DEFAULT_MODEL, help='LIIF checkpoint (default: %(default)s)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--tile', type=int, default=65536,
                        help='output pixels decoded at once (default: %(default)s)')
    parser.add_argument('--max-memory', type=parse_size, default=None,
                        help='cap on decoding memory, e.g. 1GB; lowers --tile to fit')
    parser.add_argument('--impl', choices=['fast', 'reference'], default='fast',
                        help='query path (default: %(default)s)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def read_input(path: str) -> Tuple[np.ndarray, Optional[np.ndarray], str, int]:
    """Reads an image as (RGB float (h, w, 3) in [0, 1], alpha uint8 or None, mode, bits)."""
    if not os.path.isfile(path):
        raise DemoError(f"input not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                gray = np.asarray(img, dtype=np.float64) / 65535
                return np.repeat(gray[..., None], 3, axis=2).clip(0, 1), None, 'L', 16
            has_alpha = img.mode in ('RGBA', 'LA', 'PA') or 'transparency' in img.info
            mode = 'L' if img.mode in ('1', 'L', 'LA') else 'RGB'
            rgba = img.convert('RGBA')
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DemoError(f"cannot read image {path}: {e}") from None
    arr = np.asarray(rgba)
    return arr[..., :3] / 255.0, (arr[..., 3] if has_alpha else None), mode, 8


def output_size(args: argparse.Namespace, h: int, w: int) -> Tuple[int, int]:
    if args.resolution is not None:
        try:
            H, W = (int(v) for v in args.resolution.split(','))
        except ValueError:
            raise DemoError(f"--resolution must be H,W in pixels, got '{args.resolution}'")
    else:
        text = args.scale if args.scale is not None else str(DEFAULT_SCALE)
        try:
            parts = [float(v) for v in text.split(',')]
            sh, sw = parts if len(parts) == 2 else (parts[0], parts[0]) if len(parts) == 1 else ()
        except ValueError:
            raise DemoError(f"--scale must be a number or SH,SW, got '{text}'")
        if not (sh > 0 and sw > 0) or not np.isfinite([sh, sw]).all():
            raise DemoError(f"--scale must be positive, got '{text}'")
        if min(sh, sw) < 1 and not args.allow_downscale:
            raise DemoError(f"--scale {text} is below 1; LIIF is for upscaling "
                            "(pass --allow-downscale to render smaller anyway)")
        H, W = round(h * sh), round(w * sw)
    if H <= 0 or W <= 0:
        raise DemoError(f"output size must be positive, got {H}x{W}")
    if (H < h or W < w) and not args.allow_downscale:
        raise DemoError(f"output {H}x{W} is smaller than the {h}x{w} input "
                        "(pass --allow-downscale to allow it)")
    return H, W


def output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    formats = Image.registered_extensions()
    if ext not in formats:
        raise DemoError(f"unknown output extension '{ext or path}'; use .png, .jpg, .bmp, "
                        ".tif or .webp")
    return formats[ext]


def check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DemoError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise DemoError(f"output folder is not writable: {folder}")


def load_model(path: str, device: torch.device) -> torch.nn.Module:
    if not os.path.isfile(path):
        hint = ' (run bash scripts/setup.sh to fetch it)' if path == DEFAULT_MODEL else ''
        raise DemoError(f"checkpoint not found: {path}{hint}")
    try:
        spec = load_checkpoint(path)['model']
        if spec['name'] not in ('liif', 'metasr'):
            raise ValueError(f"{path} holds a '{spec['name']}' model, not LIIF or MetaSR")
        model = models.make(spec, load_sd=True)
    except ValueError as e:
        raise DemoError(str(e)) from None
    return model.to(device).eval()


def to_image(out: np.ndarray, alpha: Optional[np.ndarray], mode: str, bits: int,
             fmt: str) -> Image.Image:
    """(H, W, 3) output array in the input's integer depth -> PIL image in the input's mode."""
    if mode == 'L':
        out = out.mean(axis=2).round().astype(out.dtype)
        if bits == 16:
            if fmt != 'PNG':
                raise DemoError('16-bit output needs a .png output file')
            return Image.fromarray(out.astype(np.uint16))
        img = Image.fromarray(out, 'L')
    else:
        img = Image.fromarray(out, 'RGB')
    if alpha is not None:
        a = Image.fromarray(alpha, 'L').resize(img.size, Image.BICUBIC)
        img = Image.merge('LA' if mode == 'L' else 'RGBA', (*img.split(), a))
        if fmt in ('JPEG', 'BMP'):
            img = img.convert(mode)  # these formats have no alpha
    return img


def save_atomic(img: Image.Image, path: str, fmt: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        img.save(tmp, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def run(args: argparse.Namespace) -> str:
    if args.tile < 1:
        raise DemoError(f"--tile must be >= 1, got {args.tile}")
    rgb, alpha, mode, bits = read_input(args.input)
    h, w = rgb.shape[:2]
    H, W = output_size(args, h, w)
    output = args.output
    if output is None:
        stem = os.path.splitext(os.path.basename(args.input))[0]
        os.makedirs('outputs', exist_ok=True)
        output = os.path.join('outputs', f'{stem}_{H}x{W}.png')
    fmt = output_format(output)
    check_writable(output)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise DemoError(str(e)) from None
    model = load_model(args.model, device)
    tile = args.tile
    if args.max_memory is not None:
        tile = max(1, min(tile, args.max_memory // BYTES_PER_QUERY))

    inp = torch.from_numpy(rgb).float().permute(2, 0, 1).unsqueeze(0).to(device)
    levels = 65535 if bits == 16 else 255
    out = np.empty((H, W, 3), dtype=np.uint16 if bits == 16 else np.uint8)
    with tqdm(total=H, unit='row', desc=f'{h}x{w} -> {H}x{W}',
              disable=args.quiet or H * W < PROGRESS_MIN_PIXELS) as bar:
        for row0, band in render_bands(model, (inp - 0.5) / 0.5, (H, W), tile, args.impl):
            out[row0:row0 + band.shape[0]] = (band * levels).round_().numpy()
            bar.update(band.shape[0])
    save_atomic(to_image(out, alpha, mode, bits, fmt), output, fmt)
    return f"wrote {output} ({W}x{H} from {w}x{h})"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
