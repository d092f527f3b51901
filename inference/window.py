"""LTE's evaluation protocol for window-based encoders (SwinIR): mirror-pad the input to a
window multiple, decode, keep the original image's part.

LTE's test.py (`--window N`) pads an h x w input to ((h // N + 1) * N, (w // N + 1) * N) by
appending its mirror image (the edge pixel repeated), queries the padded image's grid and crops
the output. Mapping the original image's queries into the padded image's domain gives the same
coordinates and cells (up to float rounding) for any output size, integer scale or not.
"""
from typing import Optional, Tuple

import torch


def padded_size(h: int, w: int, window: int) -> Tuple[int, int]:
    """LTE's padded size: the next multiple of the window strictly above each side."""
    return (h // window + 1) * window, (w // window + 1) * window


def pad_to_window(inp: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) mirror-padded at the bottom and right (LTE's --window).

    Raises:
        ValueError: window below 1, or an input smaller than its padding (the mirror image
            cannot supply it).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    h, w = inp.shape[-2:]
    H, W = padded_size(h, w, window)
    if H > 2 * h or W > 2 * w:
        raise ValueError(f"window {window}: a {h}x{w} input cannot be mirror-padded to {H}x{W} "
                         f"(LTE's protocol pads by up to one window; each side needs at least "
                         f"{(window + 1) // 2} pixels)")
    inp = torch.cat([inp, inp.flip(-2)], dim=-2)[..., :H, :]
    return torch.cat([inp, inp.flip(-1)], dim=-1)[..., :W]


def to_padded_domain(coord: torch.Tensor, cell: Optional[torch.Tensor], size: Tuple[int, int],
                     padded: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Queries of an h x w image, (..., 2) in (-1, 1), moved into the domain of its padding to
    H x W, where the image covers the top-left part: c' = (c + 1) h / H - 1, cell' = cell h / H.
    """
    ratio = coord.new_tensor([size[0] / padded[0], size[1] / padded[1]])
    return (coord + 1) * ratio - 1, None if cell is None else cell * ratio

