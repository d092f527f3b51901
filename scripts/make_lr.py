"""Make EDSR-style LR images from a folder of HR images, with MATLAB bicubic semantics.

Writes OUT/X{s}/<name>x{s}.png = imresize(modcrop(HR, s), 1/s, 'bicubic') for each scale,
which is how the DIV2K and benchmark LR_bicubic files were made, so that a user with only
HR images can run the x2-x4 benchmark protocol. Images are read as a viewer shows them (EXIF
orientation applied); 16-bit images give 16-bit LR files, grayscale gives grayscale.

Example:
  python scripts/make_lr.py --hr load/benchmark/Set5/HR --out load/benchmark/Set5/LR_bicubic \\
      --scales 2 3 4
"""
import os
import sys
from typing import List, Optional

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number, run_main  # noqa: E402
from datasets.image_folder import check_unique_stems, list_images  # noqa: E402
from utils.image_io.write import write_image  # noqa: E402
from utils.image_io.read import read_image  # noqa: E402
from utils.matlab_resize import imresize_down, modcrop  # noqa: E402


def make_lr(hr_dir: str, out_dir: str, scales: List[int], overwrite: bool = False,
            quiet: bool = False) -> int:
    """Writes the LR files; returns how many were written."""
    names = list_images(hr_dir)
    check_unique_stems(names, lambda name: f"{os.path.splitext(name)[0]}x<s>.png")
    written = 0
    for name in tqdm(names, desc='make_lr', disable=quiet):
        image = read_image(os.path.join(hr_dir, name))  # oriented, 8 or 16 bits, [0, 1]
        levels = 2 ** image.bits - 1
        colour = image.rgb[..., :1] if image.gray else image.rgb
        hr = np.round(colour * levels).astype(np.uint16 if image.bits == 16 else np.uint8)
        stem = os.path.splitext(name)[0]
        for s in scales:
            folder = os.path.join(out_dir, f'X{s}')
            target = os.path.join(folder, f'{stem}x{s}.png')
            if os.path.exists(target) and not overwrite:
                continue
            os.makedirs(folder, exist_ok=True)
            write_image(target, imresize_down(modcrop(hr, s), s), image.bits)
            written += 1
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='output folder (gets X<s>/ subfolders)')
    parser.add_argument('--scales', type=number(int, 2), nargs='+', default=[2, 3, 4],
                        help='integer scales (default: 2 3 4)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LR files')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)

    def body() -> int:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file, not a folder")
        n = make_lr(args.hr, args.out, args.scales, args.overwrite, args.quiet)
        print(f"wrote {n} LR images under {args.out}")
        return 0
    return run_main(body, 'interrupted; the LR files written so far are complete')


if __name__ == '__main__':
    sys.exit(main())
