"""Writing images row band by row band: PNG (8/16-bit, compressed in parallel threads, see
PNGWriter below) and TIFF (8/16-bit, tifffile) are streamed to disk as the bands arrive, so
the output never exists whole in memory; JPEG, WebP and BMP are assembled in memory first
(their encoders need the whole image), which the caller checks against its memory limit with
`check_output` before any pixel is decoded.

The streaming PNG writer: a PNG's pixels are one zlib stream over filtered rows. zlib releases
the GIL, so each band of rows is filtered and deflated in a thread pool as it arrives,
independently of the others: each band's raw deflate data ends on a byte boundary
(Z_SYNC_FLUSH), so the bands' data concatenated, after one zlib header and before one final
empty block and the Adler-32 of all the filtered bytes (combined from the bands' own, as
zlib's adler32_combine does), is one valid stream. Writing overlaps with whatever produces the
bands (the decoder). Rows are filtered with PNG filter 2 (Up: each byte minus the byte above
it, the row above the first one being zero): on the smooth images an upscaler makes it
compresses better than Pillow's default and costs one vectorised subtraction. Each band starts
a fresh deflate window, a few hundred bytes of overhead per band."""
import os
import shutil
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Deque, Iterable, Iterator, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image

from ..files import atomic_path
from ..units import format_bytes

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


# --- the streaming PNG writer (see the module docstring) ---

SIGNATURE = b'\x89PNG\r\n\x1a\n'
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # planes -> gray, gray+alpha, RGB, RGBA
FILTER_UP = 2
DEFAULT_LEVEL = 6  # zlib's default; Pillow's too
ADLER_BASE = 65521
MAX_THREADS = 8


# Bands being compressed or waiting to be written, at most, per compression thread
# (inference.plan counts them in the memory budget).
QUEUED_PER_THREAD = 2


PNG_THREADS = max(1, min(MAX_THREADS, os.cpu_count() or 1))  # by default: the CPUs


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """The Adler-32 of A + B from adler32(A), adler32(B) and len(B) (zlib's formula)."""
    rem = len2 % ADLER_BASE
    sum1 = adler1 & 0xffff
    sum2 = (rem * sum1) % ADLER_BASE
    sum1 += (adler2 & 0xffff) + ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xffff) + ((adler2 >> 16) & 0xffff) + ADLER_BASE - rem
    sum1 %= ADLER_BASE
    sum2 %= ADLER_BASE
    return sum1 | (sum2 << 16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xffffffff
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)


def _zlib_header(level: int) -> bytes:
    """CMF (deflate, 32 KB window) and FLG with the level hint, checksum-corrected."""
    flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
    cmf, flg = 0x78, flevel << 6
    flg += 31 - (cmf * 256 + flg) % 31
    return bytes([cmf, flg])


def _deflate_band(rows: np.ndarray, above: Optional[np.ndarray], level: int
                  ) -> Tuple[bytes, int, int]:
    """Filters (n, row_bytes) uint8 rows with Up (above: the row before them, None at the
    top) and deflates them. Returns (raw deflate data, Adler-32 and length of the filtered
    bytes)."""
    n, width = rows.shape
    filtered = np.empty((n, width + 1), dtype=np.uint8)
    filtered[:, 0] = FILTER_UP
    if above is None:
        filtered[0, 1:] = rows[0]
    else:
        np.subtract(rows[0], above, out=filtered[0, 1:])
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    raw = filtered.data
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    data = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data, zlib.adler32(raw), filtered.nbytes


class PNGWriter:
    """Writes an H x W PNG to an open binary file from consecutive bands of rows.

    Args:
        f: the file, positioned at its start.
        size: (H, W).
        planes: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
        bits: 8 or 16 (samples given as uint8 or uint16).
        level: zlib level 0-9.
        threads: compression threads (default: PNG_THREADS).
    """

    def __init__(self, f: BinaryIO, size: Tuple[int, int], planes: int, bits: int,
                 level: int = DEFAULT_LEVEL, threads: Optional[int] = None):
        if planes not in COLOUR_TYPES or bits not in (8, 16):
            raise ValueError(f"PNG takes 1-4 planes of 8 or 16 bits, got {planes} of {bits}")
        self.f, self.size, self.planes, self.bits, self.level = f, size, planes, bits, level
        self.threads = threads or PNG_THREADS
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix='png')
        self.pending: Deque[Future] = deque()
        self.above: Optional[np.ndarray] = None
        self.rows = 0
        self.adler = 1  # Adler-32 of nothing
        H, W = size
        f.write(SIGNATURE + _chunk(b'IHDR', struct.pack(
            '>IIBBBBB', W, H, bits, COLOUR_TYPES[planes], 0, 0, 0)))
        self.header = _zlib_header(level)

    def write(self, band: np.ndarray) -> None:
        """Queues a (rows, W, planes) band of uint8 (8 bits) or uint16 (16 bits) samples."""
        H, W = self.size
        if band.ndim != 3 or band.shape[1:] != (W, self.planes):
            raise ValueError(f"band of shape {band.shape}; expected (rows, {W}, {self.planes})")
        if self.rows + band.shape[0] > H:
            raise ValueError(f"more than the image's {H} rows given")
        # Bytes as PNG stores them: 16-bit samples big-endian.
        rows = np.ascontiguousarray(band.astype('>u2' if self.bits == 16 else np.uint8,
                                                copy=False)).view(np.uint8)
        rows = rows.reshape(band.shape[0], -1)
        if not len(rows):
            return
        self.pending.append(self.pool.submit(_deflate_band, rows, self.above, self.level))
        self.above = rows[-1]
        self.rows += len(rows)
        while len(self.pending) > QUEUED_PER_THREAD * self.threads:  # bounded memory
            self._write_oldest()

    def _write_oldest(self) -> None:
        data, adler, length = self.pending.popleft().result()
        self.adler = adler32_combine(self.adler, adler, length)
        self.f.write(_chunk(b'IDAT', self.header + data))
        self.header = b''

    def close(self) -> None:
        """Writes the rest; ValueError if fewer rows than the image's were given."""
        try:
            while self.pending:
                self._write_oldest()
            if self.rows != self.size[0]:
                raise ValueError(f"{self.rows} rows given for an image of {self.size[0]}")
            final = zlib.compressobj(self.level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
            self.f.write(_chunk(b'IDAT', self.header + final + struct.pack('>I', self.adler)))
            self.f.write(_chunk(b'IEND', b''))
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def write_png(f: BinaryIO, size: Tuple[int, int], planes: int, bits: int,
              bands: Iterable[np.ndarray], level: int = DEFAULT_LEVEL,
              threads: Optional[int] = None) -> None:
    """Writes the bands (see PNGWriter) as one PNG into `f`."""
    writer = PNGWriter(f, size, planes, bits, level, threads)
    try:
        for band in bands:
            writer.write(band)
    except BaseException:
        writer.pool.shutdown(wait=True, cancel_futures=True)
        raise
    writer.close()
