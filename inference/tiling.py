"""Encoding an image in tiles, with the same latent grid as the whole-image encoder.

A convolutional encoder without strides (EDSR, EDSR-baseline, RDN with no_upsampling) gives
each latent code from the input pixels within its receptive radius. Each tile is therefore
encoded from its own pixels plus a halo of at least that radius (clipped at the image border,
where the whole-image encoder zero-pads exactly as the tile's does), and the halo's codes are
discarded: the assembled grid equals the whole-image one up to float rounding, while the
encoder's activations never exceed one tile plus halo.

SwinIR's shifted windows reach across the whole image in principle (each shifted block moves
information by up to a window), so no halo makes its tiles exact. Its tiles and halos are
aligned to the window partition (so every window a tile sees is a window of the whole image)
with a halo of SWIN_HALO pixels by default; the README gives the difference measured.
"""
from typing import Optional, Tuple, Union

import torch
from torch import nn


def receptive_radius(encoder: nn.Module) -> int:
    """Upper bound, in input pixels, of how far from a code the encoder looks.

    The sum of dilation * (kernel - 1) / 2 over all its convolutions: exact for a chain of
    convolutions with residual connections (EDSR: its longest path runs through every one),
    an upper bound for dense connections (RDN).

    Raises:
        ValueError: a layer that strides, pads unevenly, or mixes pixels otherwise (attention,
            pixel shuffle), for which tiles with a halo are not exact.
    """
    radius = 0
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Conv2d):
            k, d, s = module.kernel_size, module.dilation, module.stride
            if s != (1, 1) or k[0] != k[1] or k[0] % 2 == 0 or module.padding != \
                    (d[0] * (k[0] // 2), d[1] * (k[1] // 2)):
                raise ValueError(f"encoder layer '{name}' ({module}) does not keep the grid; "
                                 "tiled encoding needs stride 1 and 'same' padding")
            radius += d[0] * (k[0] // 2)
        elif isinstance(module, nn.PixelShuffle) or hasattr(module, 'window_size'):
            raise ValueError(f"encoder layer '{name or 'encoder'}' ({type(module).__name__}) "
                             "mixes pixels beyond convolutions (upsampling or window "
                             "attention); tiled encoding supports convolutional encoders "
                             "without upsampling (EDSR, EDSR-baseline, RDN)")
    return radius


SWIN_HALO = 32  # default halo of window-attention encoders, rounded up to the window


def tiling_geometry(encoder: nn.Module, halo: Optional[int] = None) -> Tuple[int, int]:
    """(halo, alignment) of the tiles of `encoder`: for convolutional encoders the receptive
    radius (a smaller halo refused) and 1; for window-attention encoders (SwinIR) the halo
    (default SWIN_HALO) rounded up to the window, and the window.

    Raises:
        ValueError: a halo below a convolutional encoder's receptive radius, or an encoder
            whose tiles cannot be aligned (see receptive_radius).
    """
    window = getattr(encoder, 'window_size', None)
    if window:
        halo = SWIN_HALO if halo is None else halo
        return -(-halo // window) * window, window
    radius = receptive_radius(encoder)
    if halo is not None and halo < radius:
        raise ValueError(f"halo {halo} is smaller than the encoder's receptive radius {radius}: "
                         "tiles would not give the whole-image codes; use a halo >= "
                         f"{radius}")
    return (radius if halo is None else halo), 1


@torch.no_grad()
def encode_tiled(encoder: nn.Module, inp: torch.Tensor, tile: Union[int, Tuple[int, int]],
                 halo: Optional[int] = None, rows: Optional[Tuple[int, int]] = None
                 ) -> torch.Tensor:
    """The encoder's output for (B, C_in, h, w) `inp`, computed tile by tile.

    Args:
        encoder: convolutional encoder keeping the input's grid (see receptive_radius), or a
            window-attention one (SwinIR) on an input whose sides are window multiples.
        inp: (B, C_in, h, w) normalised input.
        tile: side of the square tiles of codes, or (rows, columns) of each tile (the last
            row and column of tiles may be smaller); for SwinIR multiples of the window.
        halo: input pixels added on each side of a tile; default (and minimum) the encoder's
            receptive radius; see tiling_geometry.
        rows: only the codes of rows [r0, r1) (the tiles start at r0); default all rows.

    Returns:
        (B, C, r1 - r0, w) latent codes, equal to encoder(inp)[..., r0:r1, :] up to float
        rounding (convolutional encoders; SwinIR: see the module docstring).

    Raises:
        ValueError: tile below 1 or not aligned, a halo below the receptive radius, an encoder
            that does not keep the grid, an input SwinIR would pad.
    """
    halo, align = tiling_geometry(encoder, halo)
    tile_rows, tile_cols = (tile, tile) if isinstance(tile, int) else tile
    if min(tile_rows, tile_cols) < 1 or tile_rows % align or tile_cols % align:
        raise ValueError(f"tile must be a positive multiple of {align}, got {tile}")
    h, w = inp.shape[-2:]
    r0, r1 = rows or (0, h)
    if align > 1 and (h % align or w % align or r0 % align):
        raise ValueError(f"window-attention encoders are tiled on inputs whose sides are "
                         f"multiples of the window {align} (pad the input first, as demo.py "
                         f"and test.py --window do); got {h}x{w} from row {r0}")
    out = None
    for t0 in range(r0, r1, tile_rows):
        t1, a0, a1 = min(r1, t0 + tile_rows), max(0, t0 - halo), min(h, t0 + tile_rows + halo)
        for c0 in range(0, w, tile_cols):
            c1, b0, b1 = min(w, c0 + tile_cols), max(0, c0 - halo), \
                min(w, c0 + tile_cols + halo)
            codes = encoder(inp[..., a0:a1, b0:b1])
            if codes.shape[-2:] != (a1 - a0, b1 - b0):
                raise ValueError(f"the encoder turned a {a1 - a0}x{b1 - b0} tile into "
                                 f"{tuple(codes.shape[-2:])} codes; tiled encoding needs "
                                 "one code per input pixel (no_upsampling)")
            if out is None:
                out = codes.new_empty(inp.shape[0], codes.shape[1], r1 - r0, w)
            out[..., t0 - r0:t1 - r0, c0:c1] = codes[..., t0 - a0:t1 - a0, c0 - b0:c1 - b0]
    return out
