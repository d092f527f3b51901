"""Bicubic interpolation as a model: the baseline that trained models must beat.

It reproduces PIL's bicubic upsampling (Keys kernel with a = -0.5, taps that fall outside the
image dropped and the rest renormalised), evaluated at any continuous coordinate and in float
(PIL rounds to 8 bits after each 1-D pass). It has no parameters.
"""
from typing import Optional, Tuple

import torch

from .decoder import ImplicitDecoder
from .models import register

KEYS_A = -0.5    # PIL's bicubic kernel parameter
SUPPORT = 2.0    # kernel half-width in input pixels (upsampling)


def keys_kernel(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5."""
    x = x.abs()
    a = KEYS_A
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def taps(center: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 4 input indices and normalised weights for output centres in input pixel units.

    Args:
        center: (...) positions, (x + 0.5) * in / out for a regular grid.
        size: number of input pixels on this axis.

    Returns:
        index (..., 4) long in [0, size), weight (..., 4) summing to 1.
    """
    first = torch.floor(center - SUPPORT + 0.5).clamp(min=0)
    last = torch.floor(center + SUPPORT + 0.5).clamp(max=size)  # exclusive
    index = first.unsqueeze(-1) + torch.arange(4, device=center.device, dtype=center.dtype)
    weight = keys_kernel(index - center.unsqueeze(-1) + 0.5)
    weight = torch.where(index < last.unsqueeze(-1), weight, torch.zeros_like(weight))
    weight = weight / weight.sum(dim=-1, keepdim=True)
    return index.clamp(max=size - 1).long(), weight


@register('bicubic')
class Bicubic(ImplicitDecoder):
    """Bicubic upsampling with the LIIF model API (encode, query)."""

    def encode(self, inp: torch.Tensor) -> torch.Tensor:
        """The 'latent codes' are the (B, 3, h, w) input pixels themselves."""
        return inp

    def query(self, feat: torch.Tensor, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 3, h, w), (B, Q, 2) in (-1, 1) (row, col) -> (B, Q, 3). Cell is not used."""
        B, C, h, w = feat.shape
        rows, row_w = taps((coord[..., 0] + 1) / 2 * h, h)          # (B, Q, 4)
        cols, col_w = taps((coord[..., 1] + 1) / 2 * w, w)
        flat = feat.reshape(B, C, h * w)
        index = (rows.unsqueeze(-1) * w + cols.unsqueeze(-2)).view(B, 1, -1)   # (B, 1, Q*16)
        values = torch.gather(flat, 2, index.expand(B, C, index.shape[-1]))
        values = values.view(B, C, coord.shape[1], 4, 4)
        weight = (row_w.unsqueeze(-1) * col_w.unsqueeze(-2)).unsqueeze(1)   # (B, 1, Q, 4, 4)
        return (values * weight).sum(dim=(-1, -2)).permute(0, 2, 1)
