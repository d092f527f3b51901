"""Resize every image of a folder to square sizes with PIL bicubic (CelebA-HQ preparation).

The official CelebA-HQ recipe: 1024x1024 originals -> 256 -> 128, 64, 32, each smaller size
made from the 256 version with PIL bicubic. Here for any folder and any list of sizes: the
first size is made from the originals, every later one from the first. Optionally writes the
split file the CelebA-HQ configs read (official split: first 29000 images train, rest val).

Example:
  python scripts/resize.py --src load/celebAHQ/data1024x1024 --out load/celebAHQ \\
      --sizes 256 128 64 32 --split-json load/celebAHQ/split.json --train-count 29000
"""
import json
import os
import sys
from typing import List, Optional

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.image_folder import check_unique_stems, list_images  # noqa: E402
from utils.cli import ArgumentParser, number, run_main  # noqa: E402
from utils.files import atomic_path  # noqa: E402
from utils.image_io.read import check_memory, image_size  # noqa: E402


def save_png_atomic(img: Image.Image, path: str) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp)


def check_sizes(src: str, names: List[str], sizes: List[int]) -> None:
    """ValueError, before anything is written, for an input or a size that cannot be held in
    memory (decoded from the headers, against utils.image_io's decoding limit)."""
    for name in names:
        path = os.path.join(src, name)
        try:
            h, w = image_size(path)
        except (OSError, ValueError, SyntaxError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        # RGB at 8 bits, and PIL's float working copy of a resize.
        what = f"{w}x{h}: decoding it" if h * w >= max(sizes) ** 2 else \
            f"resized to {max(sizes)}x{max(sizes)}: that size"
        check_memory(path, what, max(h * w, max(sizes) ** 2) * (3 + 3 * 4))


def resize_folder(src: str, out: str, sizes: List[int], quiet: bool = False) -> List[str]:
    """Writes OUT/<size>/<stem>.png for every image and size; returns the output names."""
    names = list_images(src)
    check_unique_stems(names, lambda name: os.path.splitext(name)[0] + '.png')
    check_sizes(src, names, sizes)
    for size in sizes:
        os.makedirs(os.path.join(out, str(size)), exist_ok=True)
    out_names = []
    for name in tqdm(names, desc='resize', disable=quiet):
        stem = os.path.splitext(name)[0] + '.png'
        try:
            with Image.open(os.path.join(src, name)) as img:
                first = img.convert('RGB').resize((sizes[0], sizes[0]), Image.BICUBIC)
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot read image {os.path.join(src, name)}: {e}") from None
        save_png_atomic(first, os.path.join(out, str(sizes[0]), stem))
        for size in sizes[1:]:
            save_png_atomic(first.resize((size, size), Image.BICUBIC),
                            os.path.join(out, str(size), stem))
        out_names.append(stem)
    return out_names


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--src', required=True, help='folder of original images')
    parser.add_argument('--out', required=True, help='output folder (gets one subfolder a size)')
    parser.add_argument('--sizes', type=number(int, 1), nargs='+', default=[256, 128, 64, 32],
                        help='square sizes; the first from the originals, the rest from it '
                             '(default: 256 128 64 32)')
    parser.add_argument('--split-json', default=None, help='also write a {train, val} split file')
    parser.add_argument('--train-count', type=number(int, 0), default=29000,
                        help='images (in sorted order) in the train split (default: 29000)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)

    def body() -> int:
        if args.split_json and os.path.isdir(args.split_json):
            raise ValueError(f"--split-json {args.split_json} is a folder; give the split "
                             "file's path (e.g. load/celebAHQ/split.json)")
        names = resize_folder(args.src, args.out, args.sizes, args.quiet)
        if args.split_json:
            with atomic_path(args.split_json) as tmp, open(tmp, 'w') as f:
                json.dump({'train': names[:args.train_count],
                           'val': names[args.train_count:]}, f)
        print(f"wrote {len(names)} images at sizes {args.sizes} under {args.out}")
        return 0
    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
