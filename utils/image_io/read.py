"""Reading images as every viewer shows them: EXIF orientation applied; 8-bit, 16-bit and
float samples scaled to [0, 1]; grayscale or colour, with or without alpha."""
import io
import logging
import os
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Optional, Tuple

import numpy as np
import png  # pypng: 16-bit colour PNG, which Pillow reads at 8 bits only
import tifffile  # 16-bit and float TIFF, which Pillow reads partly or not at all
from PIL import Image, UnidentifiedImageError

from ..devices import available_memory
from ..units import format_bytes

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Byte offset of the bit depth in a PNG file: signature (8), chunk length and type (8),
# width and height (8).
PNG_BIT_DEPTH_OFFSET = 24
TIFF_EXTENSIONS = ('.tif', '.tiff')
EXIF_ORIENTATION = 0x0112
# Decoded bytes per input pixel the caller holds at most: the file's samples (up to 8 bytes)
# and three float32 copies of RGB (the array, the tensor and its normalised copy).
BYTES_PER_INPUT_PIXEL = 8 + 3 * 3 * 4


class ImageData(NamedTuple):
    """A decoded image.

    rgb: (h, w, 3) float32 in [0, 1] (grayscale repeated on the three channels).
    alpha: (h, w) float32 in [0, 1], or None.
    gray: the file was grayscale.
    bits: 8, or 16 for 16-bit and floating-point files (the depth an output keeps).
    icc: the file's ICC profile (bytes), or None; outputs are written without one.
    """
    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    gray: bool
    bits: int
    icc: Optional[bytes] = None


def is_srgb(icc: Optional[bytes]) -> bool:
    """Whether an ICC profile is (or is missing and so taken as) sRGB, what outputs without a
    profile are shown as."""
    if icc is None:
        return True
    try:
        from PIL import ImageCms
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return 'srgb' in ImageCms.getProfileDescription(profile).lower()
    except (ImportError, OSError, ValueError, TypeError):
        return False


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """(h, w, ...) array as shown by a viewer that applies EXIF orientation 1-8 (the same
    transposition as PIL.ImageOps.exif_transpose)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _split(arr: np.ndarray, gray: bool, has_alpha: bool, bits: int, scale: float,
           orientation: int = 1, icc: Optional[bytes] = None) -> ImageData:
    """(h, w, planes) samples / scale -> ImageData, oriented (one float32 copy at most)."""
    arr = arr.astype(np.float32)
    arr /= scale
    arr = orient(np.clip(arr, 0, 1, out=arr), orientation)
    colour = arr[..., :1 if gray else 3]
    rgb = np.repeat(colour, 3, axis=2) if gray else colour
    return ImageData(np.ascontiguousarray(rgb), arr[..., -1] if has_alpha else None, gray, bits,
                     icc)


def _png_bit_depth(path: str) -> Optional[int]:
    with open(path, 'rb') as f:
        head = f.read(PNG_BIT_DEPTH_OFFSET + 1)
    if head[:8] != PNG_SIGNATURE or len(head) <= PNG_BIT_DEPTH_OFFSET:
        return None
    return head[PNG_BIT_DEPTH_OFFSET]


# TIFF PlanarConfiguration 2: the samples stored plane by plane (tifffile gives (s, h, w)).
PLANAR_SEPARATE = 2


def _read_tiff(path: str) -> Optional[ImageData]:
    """TIFF of uint8, uint16 or float samples (floats taken as [0, 1]), 1-4 planes; None for
    a compression tifffile cannot decode without imagecodecs (LZW, JPEG: Pillow reads
    those). ValueError for float samples holding NaN."""
    with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        try:
            arr = page.asarray()
        except (ValueError, NotImplementedError) as e:
            if 'imagecodecs' in str(e) or 'compression' in str(e).lower():
                return None
            raise
        if int(page.planarconfig) == PLANAR_SEPARATE and page.samplesperpixel > 1:
            arr = np.moveaxis(arr, 0, -1)  # stored plane by plane: (samples, h, w)
        tag = page.tags.get('Orientation')
        icc = page.tags.get('InterColorProfile')
    orientation = int(tag.value) if tag is not None else 1
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"a TIFF of shape {arr.shape} (expected h x w with 1-4 samples)")
    if arr.dtype == np.uint8:
        bits, scale = 8, 255
    elif arr.dtype == np.uint16:
        bits, scale = 16, 65535
    elif arr.dtype.kind == 'f':
        bits, scale = 16, 1
        if np.isnan(arr).any():
            raise ValueError(f"it holds NaN samples ({int(np.isnan(arr).sum())} of them): no "
                             "output can be computed from them")
        arr = np.nan_to_num(arr, posinf=1.0, neginf=0.0)
    else:
        raise ValueError(f"TIFF samples of type {arr.dtype} (expected uint8, uint16 or float)")
    planes = arr.shape[2]
    return _split(arr, planes <= 2, planes in (2, 4), bits, scale, orientation,
                  icc.value if icc is not None else None)


@contextmanager
def _tifffile_quiet() -> Iterator[None]:
    """tifffile's logged warnings about a malformed file held back while we read (the file is
    then reported once, as an error naming it)."""
    log = logging.getLogger('tifffile')
    saved = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(saved)


@contextmanager
def _pixel_limit(limit: Optional[int]) -> Iterator[None]:
    """Pillow's decompression-bomb limit replaced by our own size check while reading."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def image_size(path: str) -> Tuple[int, int]:
    """(h, w) of an image file as stored, read from its header only."""
    if path.lower().endswith(TIFF_EXTENSIONS):
        with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return page.imagelength, page.imagewidth  # whatever the planar configuration
    with _pixel_limit(None), Image.open(path) as img:
        return img.height, img.width


def decoding_limit() -> Optional[int]:
    """The bytes an image's decoded copies may take when the caller sets no limit: half the
    memory available (None where that is unknown)."""
    available = available_memory()
    return None if available is None else available // 2


def check_memory(path: str, what: str, need: float, max_bytes: Optional[float] = None) -> None:
    """ValueError when `need` bytes for the image at `path` (`what` it is, e.g. '640x480:
    decoding it') exceed max_bytes (--max-memory), or when none is given, decoding_limit()."""
    limit, which = (max_bytes, '--max-memory') if max_bytes is not None else \
        (decoding_limit(), 'half the memory available')
    if limit is not None and need > limit:
        raise ValueError(f"input {path} is {what} needs {format_bytes(need)}, above the "
                         f"{format_bytes(limit)} memory limit ({which})")


def read_image(path: str, max_bytes: Optional[float] = None) -> ImageData:
    """Reads PNG, JPEG, BMP, TIFF or WebP as a viewer shows it (EXIF orientation applied).
    16-bit PNG and TIFF keep 16 bits; float TIFF samples are taken as [0, 1].

    Args:
        max_bytes: refuse an image whose decoded copies (BYTES_PER_INPUT_PIXEL per pixel)
            would take more memory than this (--max-memory); checked from the header, before
            decoding (Pillow's decompression-bomb check is replaced by it). None: half the
            memory available (decoding_limit).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable image, or too large (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input not found: {path}")
    try:
        h, w = image_size(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, IndexError,
            tifffile.TiffFileError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    check_memory(path, f"{w}x{h}: decoding it", h * w * BYTES_PER_INPUT_PIXEL, max_bytes)
    try:
        if path.lower().endswith(TIFF_EXTENSIONS):
            image = _read_tiff(path)
            if image is not None:
                return image
        with _pixel_limit(None), Image.open(path) as img:
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
            icc = img.info.get('icc_profile')
            if _png_bit_depth(path) == 16:
                width, height, rows, info = png.Reader(filename=path).asDirect()
                arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
                arr = arr.reshape(height, width, info['planes'])
                return _split(arr, info['greyscale'], info['alpha'], 16, 65535, orientation, icc)
            img.load()
            if img.mode in ('I', 'I;16', 'I;16B', 'I;16L'):  # 16-bit grayscale
                arr = np.asarray(img).astype(np.int64).clip(0, 65535)[..., None]
                return _split(arr, True, False, 16, 65535, orientation, icc)
            if img.mode == 'F':
                return _split(np.asarray(img)[..., None], True, False, 16, 1, orientation, icc)
            gray = img.mode in ('1', 'L', 'LA')
            has_alpha = img.mode in ('RGBA', 'LA', 'PA', 'RGBa') or 'transparency' in img.info
            arr = np.asarray(img.convert(('LA' if gray else 'RGBA') if has_alpha
                                         else ('L' if gray else 'RGB')))
            if arr.ndim == 2:
                arr = arr[..., None]
        return _split(arr, gray, has_alpha, 8, 255, orientation, icc)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, IndexError, png.Error,
            tifffile.TiffFileError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def resize_alpha(alpha: np.ndarray, size: Tuple[int, int],
                 rows: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """(h, w) alpha in [0, 1] -> (H, W), PIL bicubic on float32, clamped to [0, 1].

    rows: only output rows [r0, r1) of the (H, W) result, (r1 - r0, W).
    """
    H, W = size
    h, w = alpha.shape
    r0, r1 = rows or (0, H)
    box = (0, r0 * h / H, w, r1 * h / H)
    out = Image.fromarray(alpha.astype(np.float32), 'F').resize((W, r1 - r0), Image.BICUBIC,
                                                                box=box)
    return np.clip(np.asarray(out), 0, 1)
