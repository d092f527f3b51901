"""Streaming PNG writer that compresses bands of rows in parallel threads.

A PNG's pixels are one zlib stream over filtered rows. zlib releases the GIL, so each band of
rows is filtered and deflated in a thread pool as it arrives, independently of the others:
each band's raw deflate data ends on a byte boundary (Z_SYNC_FLUSH), so the bands' data
concatenated, after one zlib header and before one final empty block and the Adler-32 of all
the filtered bytes (combined from the bands' own, as zlib's adler32_combine does), is one
valid stream. Writing overlaps with whatever produces the bands (the decoder).

Rows are filtered with PNG filter 2 (Up: each byte minus the byte above it, the row above the
first one being zero): on the smooth images an upscaler makes it compresses better than
Pillow's default and costs one vectorised subtraction. Each band starts a fresh deflate
window, a few hundred bytes of overhead per band.
"""
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Deque, Iterable, Optional, Tuple

import numpy as np

SIGNATURE = b'\x89PNG\r\n\x1a\n'
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # planes -> gray, gray+alpha, RGB, RGBA
FILTER_UP = 2
DEFAULT_LEVEL = 6  # zlib's default; Pillow's too
ADLER_BASE = 65521
MAX_THREADS = 8


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
        threads: compression threads (default: the CPUs, at most MAX_THREADS).
    """

    def __init__(self, f: BinaryIO, size: Tuple[int, int], planes: int, bits: int,
                 level: int = DEFAULT_LEVEL, threads: Optional[int] = None):
        if planes not in COLOUR_TYPES or bits not in (8, 16):
            raise ValueError(f"PNG takes 1-4 planes of 8 or 16 bits, got {planes} of {bits}")
        self.f, self.size, self.planes, self.bits, self.level = f, size, planes, bits, level
        self.threads = threads or max(1, min(MAX_THREADS, os.cpu_count() or 1))
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
        while len(self.pending) > 2 * self.threads:  # bounded memory: write the oldest
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
