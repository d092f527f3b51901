"""Image files for the demo: 8- and 16-bit, grayscale or colour, with or without alpha."""
import os
from typing import NamedTuple, Optional

import numpy as np
import png  # pypng: 16-bit colour PNG, which Pillow reads and writes at 8 bits only
from PIL import Image, UnidentifiedImageError

from .files import atomic_path

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Byte offset of the bit depth in a PNG file: signature (8), chunk length and type (8),
# width and height (8).
PNG_BIT_DEPTH_OFFSET = 24


class ImageData(NamedTuple):
    """A decoded image.

    rgb: (h, w, 3) float32 in [0, 1] (grayscale repeated on the three channels).
    alpha: (h, w) float32 in [0, 1], or None.
    gray: the file was grayscale.
    bits: 8 or 16, the sample depth of the file.
    """
    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    gray: bool
    bits: int


def _png_bit_depth(path: str) -> Optional[int]:
    with open(path, 'rb') as f:
        head = f.read(PNG_BIT_DEPTH_OFFSET + 1)
    if head[:8] != PNG_SIGNATURE or len(head) <= PNG_BIT_DEPTH_OFFSET:
        return None
    return head[PNG_BIT_DEPTH_OFFSET]


def _split(arr: np.ndarray, gray: bool, has_alpha: bool, bits: int) -> ImageData:
    """(h, w, planes) integer array -> ImageData."""
    arr = arr.astype(np.float32) / (2 ** bits - 1)
    colour = arr[..., :1 if gray else 3]
    rgb = np.repeat(colour, 3, axis=2) if gray else colour
    return ImageData(np.ascontiguousarray(rgb), arr[..., -1] if has_alpha else None, gray, bits)


def read_image(path: str) -> ImageData:
    """Reads PNG, JPEG, BMP, TIFF or WebP; 16-bit PNGs keep their 16 bits.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable image (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input not found: {path}")
    try:
        if _png_bit_depth(path) == 16:
            width, height, rows, info = png.Reader(filename=path).asDirect()
            planes = info['planes']
            arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
            arr = arr.reshape(height, width, planes)
            return _split(arr, info['greyscale'], info['alpha'], 16)
        with Image.open(path) as img:
            img.load()
            if img.mode in ('I', 'I;16', 'I;16B', 'I;16L'):  # 16-bit grayscale (e.g. TIFF)
                arr = np.asarray(img).astype(np.int64).clip(0, 65535)[..., None]
                return _split(arr, True, False, 16)
            gray = img.mode in ('1', 'L', 'LA')
            has_alpha = img.mode in ('RGBA', 'LA', 'PA', 'RGBa') or 'transparency' in img.info
            arr = np.asarray(img.convert('LA' if gray else 'RGBA'))
        return _split(arr, gray, has_alpha, 8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, png.Error) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def resize_alpha(alpha: np.ndarray, size) -> np.ndarray:
    """(h, w) alpha in [0, 1] -> (H, W), PIL bicubic on float32, clamped to [0, 1]."""
    H, W = size
    out = Image.fromarray(alpha.astype(np.float32), 'F').resize((W, H), Image.BICUBIC)
    return np.clip(np.asarray(out), 0, 1)


def output_format(path: str) -> str:
    """PIL format name for the file's extension (e.g. 'PNG'), or ValueError."""
    ext = os.path.splitext(path)[1].lower()
    formats = Image.registered_extensions()
    if ext not in formats:
        raise ValueError(f"unknown output extension '{ext or path}'; use .png, .jpg, .bmp, "
                         ".tif or .webp")
    return formats[ext]


def write_image(path: str, samples: np.ndarray, bits: int) -> None:
    """Writes (H, W, planes) integer samples (1: gray, 2: gray+alpha, 3: RGB, 4: RGBA).

    The file appears only when complete (written beside it, then renamed). 16-bit samples
    need a .png path. Formats without alpha (JPEG, BMP) drop the alpha plane.
    """
    fmt = output_format(path)
    planes = samples.shape[2]
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        if bits == 16:
            if fmt != 'PNG':
                raise ValueError(f'16-bit output needs a .png file, got {path}')
            H, W = samples.shape[:2]
            writer = png.Writer(W, H, greyscale=planes <= 2, alpha=planes in (2, 4),
                                bitdepth=16)
            writer.write_array(f, samples.astype(np.uint16).reshape(-1))
        else:
            if fmt in ('JPEG', 'BMP') and planes in (2, 4):
                samples = samples[..., :planes - 1]
            img = Image.fromarray(samples.astype(np.uint8).squeeze(2) if samples.shape[2] == 1
                                  else samples.astype(np.uint8))
            img.save(f, format=fmt)
