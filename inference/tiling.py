"""Encoding an image in tiles, with the same latent grid as the whole-image encoder.

A convolutional encoder without strides (EDSR, EDSR-baseline, RDN with no_upsampling) gives
each latent code from the input pixels within its receptive radius. Each tile is therefore
encoded from its own pixels plus a halo of at least that radius (clipped at the image border,
where the whole-image encoder zero-pads exactly as the tile's does), and the halo's codes are
discarded: the assembled grid equals the whole-image one up to float rounding, while the
encoder's activations never exceed one tile plus halo.
"""
from typing import Optional

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


def encode(model: nn.Module, inp: torch.Tensor, tile: Optional[int] = None):
    """`model.encode(inp)`, its encoder run in tiles of `tile` codes when given (the same
    features; see encode_tiled)."""
    if not tile:
        return model.encode(inp)
    return model.from_codes(inp, encode_tiled(model.encoder, inp, tile))


@torch.no_grad()
def encode_tiled(encoder: nn.Module, inp: torch.Tensor, tile: int,
                 halo: Optional[int] = None) -> torch.Tensor:
    """The encoder's output for (B, C_in, h, w) `inp`, computed tile by tile.

    Args:
        encoder: convolutional encoder keeping the input's grid (see receptive_radius).
        inp: (B, C_in, h, w) normalised input.
        tile: side of the square tiles of codes (the last row and column of tiles may be
            smaller).
        halo: input pixels added on each side of a tile; default (and minimum) the encoder's
            receptive radius.

    Returns:
        (B, C, h, w) latent codes, equal to encoder(inp) up to float rounding.

    Raises:
        ValueError: tile below 1, a halo below the receptive radius, or an encoder that does
            not keep the grid.
    """
    radius = receptive_radius(encoder)
    halo = radius if halo is None else halo
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if halo < radius:
        raise ValueError(f"halo {halo} is smaller than the encoder's receptive radius {radius}: "
                         "tiles would not give the whole-image codes; use a halo >= "
                         f"{radius}")
    h, w = inp.shape[-2:]
    out = None
    for r0 in range(0, h, tile):
        r1, a0, a1 = min(h, r0 + tile), max(0, r0 - halo), min(h, r0 + tile + halo)
        for c0 in range(0, w, tile):
            c1, b0, b1 = min(w, c0 + tile), max(0, c0 - halo), min(w, c0 + tile + halo)
            codes = encoder(inp[..., a0:a1, b0:b1])
            if codes.shape[-2:] != (a1 - a0, b1 - b0):
                raise ValueError(f"the encoder turned a {a1 - a0}x{b1 - b0} tile into "
                                 f"{tuple(codes.shape[-2:])} codes; tiled encoding needs "
                                 "one code per input pixel (no_upsampling)")
            if out is None:
                out = codes.new_empty(inp.shape[0], codes.shape[1], h, w)
            out[..., r0:r1, c0:c1] = codes[..., r0 - a0:r1 - a0, c0 - b0:c1 - b0]
    return out
