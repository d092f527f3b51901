"""Time the PNG writer against Pillow's default save on a large upscaled image.

The image: --input (default: the bundled sample) resized with PIL bicubic to --size, a smooth
picture like an upscaler's output. Our writer gets it in the demo's bands of 65536 pixels
(utils.image_io.write.write_bands, compressed in threads); Pillow saves it whole with its
defaults (zlib level 6, adaptive filters). Runs alternate; prints each run's seconds and
sizes, the medians, and whether both files read back identical to the pixels.

Examples:
  python scripts/bench_png.py
  python scripts/bench_png.py --input ../shared/data/train/DIV2K_sample/0004.png --repeats 5
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number  # noqa: E402
from utils.image_io.write import write_bands  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAND_PIXELS = 65536  # the memory plan's bands on a CPU (inference.plan.BAND_PIXELS)


def size_arg(text: str):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, e.g. 7680x4320, got '{text}'")
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    return width, height


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--input', default=os.path.join(REPO, 'assets', 'astronaut-128.png'),
                        help='image to upscale (default: the bundled sample)')
    parser.add_argument('--size', type=size_arg, default=(7680, 4320), metavar='WxH',
                        help='size of the upscaled image (default: 7680x4320)')
    parser.add_argument('--repeats', type=number(int, 1), default=3,
                        help='runs of each (default: 3)')
    args = parser.parse_args(argv)
    width, height = args.size
    pixels = np.asarray(Image.open(args.input).convert('RGB').resize((width, height),
                                                                     Image.BICUBIC))
    rows = max(1, BAND_PIXELS // width)
    times = {'pillow': [], 'ours': []}
    sizes = {}
    print(f'{width}x{height} RGB from {args.input}; ours in bands of {rows} rows, '
          f'{os.cpu_count()} CPUs')
    print('| run | Pillow default save (s) | ours (s) | speed-up |')
    print('|---|---|---|---|')
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: os.path.join(folder, f'{name}.png') for name in times}
        for run in range(args.repeats):
            start = time.perf_counter()
            Image.fromarray(pixels).save(paths['pillow'])
            times['pillow'].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_bands(paths['ours'], (height, width), 3, 8,
                        (pixels[r:r + rows] for r in range(0, height, rows)))
            times['ours'].append(time.perf_counter() - start)
            print(f"| {run + 1} | {times['pillow'][-1]:.2f} | {times['ours'][-1]:.2f} | "
                  f"{times['pillow'][-1] / times['ours'][-1]:.2f}x |", flush=True)
        for name, path in paths.items():
            sizes[name] = os.path.getsize(path)
            if not np.array_equal(np.asarray(Image.open(path)), pixels):
                print(f'error: {name} does not read back identical', file=sys.stderr)
                return 1
    pillow, ours = (statistics.median(times[n]) for n in ('pillow', 'ours'))
    print(f"median: Pillow {pillow:.2f} s, {sizes['pillow'] / 1e6:.2f} MB; ours {ours:.2f} s, "
          f"{sizes['ours'] / 1e6:.2f} MB: {pillow / ours:.2f}x faster at "
          f"{sizes['ours'] / sizes['pillow']:.3f}x the size; both read back identical")
    return 0


if __name__ == '__main__':
    sys.exit(main())
