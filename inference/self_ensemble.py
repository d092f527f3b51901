"""Geometric self-ensemble: the model run on flipped and transposed copies of the input, each
output turned back and the outputs averaged, then clamped once.

x8 is EDSR's `forward_x8` (Lim et al., 2017): the inputs [x, v, h, hv, t, tv, th, thv], index i
carrying the bits v = 1 (flip the columns), h = 2 (flip the rows), t = 4 (swap rows and
columns), applied in that order; the output of input i decoded on the grid of its own size
(H and W swapped for a transposed input) and turned back in the reverse order. rot4 is Thera's
(Becker et al., 2025): the four rotations of the input, which are x8's indices 0, 5, 3, 6. Both
average the raw outputs and clamp the mean to [0, 1], as EDSR and Thera do.
"""
from typing import Callable, Optional, Tuple

import torch

from utils.coords import make_coord

MODES = {'x8': (0, 1, 2, 3, 4, 5, 6, 7), 'rot4': (0, 5, 3, 6)}


def transform(x: torch.Tensor, i: int) -> torch.Tensor:
    """(..., H, W) image turned as input i of the x8 ensemble."""
    if i & 1:
        x = x.flip(-1)
    if i & 2:
        x = x.flip(-2)
    return x.transpose(-2, -1) if i & 4 else x


def untransform(y: torch.Tensor, i: int) -> torch.Tensor:
    """The inverse of transform(., i)."""
    if i & 4:
        y = y.transpose(-2, -1)
    if i & 2:
        y = y.flip(-2)
    return y.flip(-1) if i & 1 else y


def self_ensemble(decode: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int],
                                   torch.Tensor],
                  image: torch.Tensor, size: Tuple[int, int], mode: str,
                  cell_factor: float = 1.0) -> torch.Tensor:
    """The ensemble's output of (1, 3, h, w) `image` at (H, W).

    Args:
        decode: (image, coord (1, Q, 2), cell (1, Q, 2), the grid's width) -> (1, Q, 3) the
            model's de-normalised output of an image at those queries, not clamped (a
            renderer's scene, with the protocol's chunks; the memory plan applies to each
            transformed input).
        mode: 'x8' or 'rot4'.
        cell_factor: LTE's cell clipping, applied to each grid's cells.

    Returns:
        (1, H * W, 3) in [0, 1], row-major.
    """
    if mode not in MODES:
        raise ValueError(f"unknown self-ensemble '{mode}'; expected one of {', '.join(MODES)}")
    H, W = size
    total: Optional[torch.Tensor] = None
    for i in MODES[mode]:
        h, w = (W, H) if i & 4 else (H, W)
        coord = make_coord((h, w), device=image.device).unsqueeze(0)
        cell = coord.new_tensor([2 / h, 2 / w]).mul_(cell_factor).expand_as(coord)
        out = decode(transform(image, i), coord, cell, w).view(1, h, w, 3).permute(0, 3, 1, 2)
        out = untransform(out, i)
        total = out if total is None else total + out
    return (total / len(MODES[mode])).clamp_(0, 1).permute(0, 2, 3, 1).reshape(1, H * W, 3)
