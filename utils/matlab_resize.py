"""MATLAB `imresize(img, 1/s, 'bicubic')` for uint8 and uint16 images, as the EDSR benchmark LR
files use.

MATLAB's bicubic is Keys' kernel with a = -0.5; when shrinking it is stretched by the scale
(antialiasing), borders are mirrored symmetrically, and for integer input each 1-D pass is
rounded to the input's type (half away from zero). Dimensions are resized height first.
"""
import math

import numpy as np

KERNEL_WIDTH = 4.0  # support of the cubic kernel, in pixels, before antialias stretching


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5, as MATLAB's imresize defines it."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_weights(in_size: int, out_size: int, scale: float) -> np.ndarray:
    """(out_size, in_size) matrix of one 1-D MATLAB bicubic resize pass."""
    if scale < 1:  # antialiasing: stretch the kernel by 1/scale
        kernel = lambda x: scale * cubic(scale * x)
        width = KERNEL_WIDTH / scale
    else:
        kernel, width = cubic, KERNEL_WIDTH
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)          # output centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]          # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding: index 0 -> 1, -1 -> 2, in_size + 1 -> in_size, ...
    mirror = np.concatenate([np.arange(in_size), np.arange(in_size)[::-1]])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_size)]
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps), indices.ravel()), weights.ravel())
    return matrix


def round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's conversion to an unsigned integer type: clamp, then round half away from zero."""
    return np.floor(np.clip(x, 0, np.iinfo(dtype).max) + 0.5).astype(dtype)


def imresize_down(img: np.ndarray, s: int) -> np.ndarray:
    """MATLAB imresize(img, 1/s, 'bicubic') of an (H, W, C) uint8 or uint16 image whose H and
    W are multiples of s (modcrop first). Returns (H/s, W/s, C) of the same type."""
    H, W = img.shape[:2]
    if H % s or W % s:
        raise ValueError(f"image {H}x{W} is not a multiple of the scale {s}; modcrop it first")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"imresize_down takes uint8 or uint16 images, got {img.dtype}")
    out = img.astype(np.float64)
    rows = resize_weights(H, H // s, 1 / s)
    out = round_to(np.einsum('oh,hwc->owc', rows, out), img.dtype).astype(np.float64)
    cols = resize_weights(W, W // s, 1 / s)
    return round_to(np.einsum('ow,hwc->hoc', cols, out), img.dtype)


def modcrop(img: np.ndarray, s: int) -> np.ndarray:
    """Crops H and W down to multiples of s (top-left kept), as EDSR's modcrop."""
    H, W = img.shape[:2]
    return img[:H - H % s, :W - W % s]
