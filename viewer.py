"""Zoom continuously into an image in a browser, each model rendering exactly the screen's
pixels, models side by side with their viewports locked together.

Starts a local web server (127.0.0.1 unless --host says otherwise) and prints its URL. The page
shows one pane per --model (and one for bicubic with --bicubic); dragging or zooming one moves
all. Zoom from fit-to-window to x64 of the input's pixels (mouse wheel, pinch, keys + - 0 and
arrows, buttons). The input scaled by the browser shows at once; each model's tiles replace it
as they arrive, rendered by the model at those pixels' centres and cells. With --hr each pane
shows its PSNR against the ground truth over the visible region. "Save view" writes the view
of every pane as PNGs (--save-dir).

Examples:
  python viewer.py --input photo.png --model pretrained/edsr-baseline-liif.pth --bicubic
  python viewer.py --input lr.png --hr hr.png --model liif.pth --model lte.pth --port 8000
"""
import argparse
import os
import sys
from typing import List, Optional

import numpy as np
import torch

from utils import resolve_device
from utils.cli import DEVICE, ArgumentParser, number, run_main
from utils.devices import NATIVE_CPU_FLAGS, PRECISIONS, cpu_flags, print_precision_note
from utils.image_io.read import read_image
from webviewer.server import Viewer, serve
from webviewer.tiles import load_panes, png_bytes

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(REPO, 'pretrained', 'edsr-baseline-liif.pth')
DEFAULT_INPUT = os.path.join(REPO, 'assets', 'astronaut-128.png')


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--input', default=DEFAULT_INPUT, help='image to view (default: the '
                                                               'bundled sample)')
    parser.add_argument('--model', action='append', default=None,
                        help='checkpoint, one pane each; repeat for more (default: '
                             'the pretrained EDSR-baseline-LIIF)')
    parser.add_argument('--bicubic', action='store_true', help='add a bicubic pane')
    parser.add_argument('--hr', default=None,
                        help='ground truth (an integer multiple of the input size, as LR/HR '
                             'pairs are): each pane shows its PSNR over the visible region')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (default: %(default)s, this machine only)')
    parser.add_argument('--port', type=number(int, 0, 65535), default=8765,
                        help='port; 0 picks a free one (default: %(default)s)')
    for names, spec in (DEVICE,):
        parser.add_argument(*names, **spec)
    parser.add_argument('--precision', choices=['auto', *PRECISIONS], default='auto',
                        help='decoder precision; auto: bf16 where the CPU computes it natively '
                             '(or on a GPU), else fp32 (default: auto)')
    parser.add_argument('--cache', type=number(int, 1), default=256, metavar='MB',
                        help='memory bound of the tile cache (default: %(default)s MB)')
    parser.add_argument('--save-dir', default=os.path.join('outputs', 'viewer'),
                        help='folder of "Save view" PNGs (default: %(default)s)')
    return parser.parse_args(argv)


def auto_precision(device: torch.device) -> str:
    """bf16 on a GPU or a CPU with native bf16 arithmetic (AVX512-BF16 or AMX), else fp32."""
    if device.type == 'cuda':
        return 'bf16'
    flags = cpu_flags() or set()
    return 'bf16' if flags & set(NATIVE_CPU_FLAGS['bf16']) else 'fp32'


def build(args: argparse.Namespace) -> Viewer:
    device = resolve_device(args.device)
    precision = auto_precision(device) if args.precision == 'auto' else args.precision
    print_precision_note(device, precision)
    image = read_image(args.input)
    rgb = torch.from_numpy(image.rgb).permute(2, 0, 1).unsqueeze(0).to(device)
    models = args.model or [DEFAULT_MODEL]
    for path in models:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
    panes = load_panes(rgb, models, args.bicubic, precision)
    hr = None
    if args.hr:
        hr = read_image(args.hr).rgb
        h, w = image.rgb.shape[:2]
        if hr.shape[0] % h or hr.shape[1] % w or hr.shape[0] // h != hr.shape[1] // w:
            raise ValueError(f"--hr is {hr.shape[1]}x{hr.shape[0]}, not the same integer "
                             f"multiple of the {w}x{h} input on both axes")
    input_png = png_bytes((image.rgb * 255).round().astype(np.uint8))
    return Viewer(panes, input_png, hr, args.save_dir, args.cache << 20)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        viewer = build(args)
        server = serve(viewer, args.host, args.port)
        host, port = server.server_address[:2]
        print(f"viewer at http://{host}:{port}/  ({', '.join(p.name for p in viewer.panes)}; "
              "Ctrl-C stops it)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print('stopped')
        finally:
            server.server_close()
        return 0
    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
