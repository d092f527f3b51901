"""Make EDSR-style LR images from a folder of HR images, with MATLAB bicubic semantics.

Writes OUT/X{s}/<name>x{s}.png = imresize(modcrop(HR, s), 1/s, 'bicubic') for each scale,
which is how the DIV2K and benchmark LR_bicubic files were made, so that a user with only
HR images can run the x2-x4 benchmark protocol.

Example:
  python scripts/make_lr.py --hr load/benchmark/Set5/HR --out load/benchmark/Set5/LR_bicubic \\
      --scales 2 3 4
"""
import argparse
import os
import sys
from typing import List, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.image_folder import list_images  # noqa: E402
from utils.files import atomic_path  # noqa: E402
from utils.matlab_resize import imresize_down, modcrop  # noqa: E402


def make_lr(hr_dir: str, out_dir: str, scales: List[int], overwrite: bool = False,
            quiet: bool = False) -> int:
    """Writes the LR files; returns how many were written."""
    names = list_images(hr_dir)
    written = 0
    for name in tqdm(names, desc='make_lr', disable=quiet):
        path = os.path.join(hr_dir, name)
        try:
            with Image.open(path) as img:
                hr = np.asarray(img.convert('RGB') if img.mode not in ('L', 'RGB') else img)
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        if hr.ndim == 2:
            hr = hr[..., None]
        stem = os.path.splitext(name)[0]
        for s in scales:
            folder = os.path.join(out_dir, f'X{s}')
            target = os.path.join(folder, f'{stem}x{s}.png')
            if os.path.exists(target) and not overwrite:
                continue
            os.makedirs(folder, exist_ok=True)
            lr = imresize_down(modcrop(hr, s), s)
            with atomic_path(target) as tmp:
                Image.fromarray(lr[..., 0] if lr.shape[2] == 1 else lr).save(tmp)
            written += 1
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='output folder (gets X<s>/ subfolders)')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4],
                        help='integer scales (default: 2 3 4)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LR files')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if any(s < 2 for s in args.scales):
        print(f"error: scales must be integers >= 2, got {args.scales}", file=sys.stderr)
        return 2
    try:
        n = make_lr(args.hr, args.out, args.scales, args.overwrite, args.quiet)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} LR images under {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
