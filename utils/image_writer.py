"""Writing images row band by row band: PNG (8/16-bit, utils.png_writer, compressed in
parallel threads) and TIFF (8/16-bit, tifffile) are streamed to disk as the bands arrive, so
the output never exists whole in memory; JPEG, WebP and BMP are assembled in memory first
(their encoders need the whole image), which the caller checks against its memory limit with
`check_output` before any pixel is decoded."""
import os
import shutil
from typing import Iterable, Iterator, NamedTuple, Tuple

import numpy as np
from PIL import Image

from .files import atomic_path
from .png_writer import write_png
from .units import format_bytes

TIFF_ROWS_PER_STRIP = 64
NO_SIDE_LIMIT = 2 ** 31 - 1  # beyond any output we could render


class Format(NamedTuple):
    """An output format: PIL name, whether it is streamed, sample depths, alpha, side limit."""
    name: str
    streamed: bool
    bits: Tuple[int, ...]
    alpha: bool
    max_side: int


FORMATS = {
    '.png': Format('PNG', True, (8, 16), True, NO_SIDE_LIMIT),
    '.tif': Format('TIFF', True, (8, 16), True, NO_SIDE_LIMIT),
    '.tiff': Format('TIFF', True, (8, 16), True, NO_SIDE_LIMIT),
    '.jpg': Format('JPEG', False, (8,), False, 65535),
    '.jpeg': Format('JPEG', False, (8,), False, 65535),
    '.webp': Format('WEBP', False, (8,), True, 16383),
    '.bmp': Format('BMP', False, (8,), False, NO_SIDE_LIMIT),
}


def output_format(path: str) -> Format:
    """The Format of an output file's extension, or ValueError naming the allowed ones."""
    if os.path.isdir(path) or path.endswith(os.sep):
        raise ValueError(f"output {path} is a folder, not a file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot write '{ext or os.path.basename(path)}' images ({path}); "
                         f"use one of: {', '.join(FORMATS)}")
    return FORMATS[ext]


def output_bits(fmt: Format, bits: int) -> int:
    """The sample depth written: the input's where the format allows it, else 8."""
    return bits if bits in fmt.bits else 8


def memory_needed(fmt: Format, size: Tuple[int, int], planes: int, bits: int) -> int:
    """Bytes the writer holds: one strip for streamed formats; for the others the samples
    and the encoder's copy of them."""
    H, W = size
    if fmt.streamed:
        return TIFF_ROWS_PER_STRIP * W * planes * bits // 8
    return 2 * H * W * planes


def check_output(path: str, size: Tuple[int, int], planes: int, bits: int,
                 max_bytes: float) -> Format:
    """Every check an output can fail, made before any pixel is decoded: the format, its
    side limit, the memory of formats written from memory, the disk space of uncompressed
    TIFF, and the folder. Returns the Format.

    Raises:
        ValueError: one line naming the size, the limit and what to do instead.
    """
    fmt = output_format(path)
    H, W = size
    if max(H, W) > fmt.max_side:
        larger = [f.name for f in dict.fromkeys(FORMATS.values())
                  if f.max_side >= max(H, W) and f.name != fmt.name]
        instead = f"write {' or '.join(sorted(set(larger)))} instead" if larger else \
            "no format holds it: ask for a smaller --scale or --resolution"
        raise ValueError(f"{fmt.name} images are at most {fmt.max_side} pixels a side; "
                         f"{W}x{H} is too large ({instead})")
    need = memory_needed(fmt, size, planes, bits)
    if need > max_bytes:
        raise ValueError(f"a {W}x{H} {fmt.name} is encoded from memory: it needs "
                         f"{format_bytes(need)}, above the {format_bytes(max_bytes)} limit "
                         "(--max-memory); .png and .tif outputs are streamed")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder is not writable: {folder}")
    if fmt.name == 'TIFF':
        raw, free = H * W * planes * bits // 8, shutil.disk_usage(folder).free
        if raw > free:
            raise ValueError(f"a {W}x{H} TIFF takes {format_bytes(raw)}, more than the "
                             f"{format_bytes(free)} free in {folder}")
    return fmt


def _strips(bands: Iterable[np.ndarray], rows: int) -> Iterator[bytes]:
    """Bytes of strips of `rows` rows (the last one shorter) from bands of any height."""
    pending, count = [], 0
    for band in bands:
        while len(band):
            take = band[:rows - count]
            pending.append(np.ascontiguousarray(take).tobytes())
            count, band = count + len(take), band[len(take):]
            if count == rows:
                yield b''.join(pending)
                pending, count = [], 0
    if pending:
        yield b''.join(pending)


def write_bands(path: str, size: Tuple[int, int], planes: int, bits: int,
                bands: Iterable[np.ndarray]) -> None:
    """Writes an (H, W) image from consecutive bands of rows, each (rows, W, planes) of
    uint8 or uint16 samples (planes 1: gray, 2: gray+alpha, 3: RGB, 4: RGBA).

    The file appears only when complete (written beside it, then renamed; an existing file
    keeps its permissions); if `bands` raises, nothing is left behind. Formats without alpha
    (JPEG, BMP) drop the alpha plane; formats without 16 bits get the top 8.
    """
    fmt = output_format(path)
    H, W = size
    dtype = np.uint16 if bits == 16 else np.uint8
    if bits not in fmt.bits:
        raise ValueError(f"{fmt.name} cannot hold {bits}-bit samples ({path})")
    with atomic_path(path) as tmp:
        if fmt.name == 'PNG':
            with open(tmp, 'wb') as f:
                write_png(f, size, planes, bits, bands)
        elif fmt.name == 'TIFF':
            import tifffile  # here: only TIFF outputs pay for importing it
            tifffile.imwrite(tmp, _strips(bands, TIFF_ROWS_PER_STRIP), shape=(H, W, planes),
                             dtype=dtype, rowsperstrip=TIFF_ROWS_PER_STRIP,
                             photometric='minisblack' if planes <= 2 else 'rgb',
                             extrasamples=('unassalpha',) if planes in (2, 4) else None)
        else:
            samples = np.empty((H, W, planes), dtype=np.uint8)
            row0 = 0
            for band in bands:
                samples[row0:row0 + len(band)] = band
                row0 += len(band)
            if not fmt.alpha and planes in (2, 4):
                samples = samples[..., :planes - 1]
            Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples).save(
                tmp, format=fmt.name)


def write_image(path: str, samples: np.ndarray, bits: int) -> None:
    """Writes (H, W, planes) integer samples at once (see write_bands)."""
    write_bands(path, samples.shape[:2], samples.shape[2], bits, [samples])
