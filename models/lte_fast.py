"""lte-fast: LTE with 1x1 convolutions for its MLP (official `models/ltep.py` of
jaewon-lee-b/lte), built to decode whole query grids at once.

Its official call takes a (B, H, W, 2) grid and a (B, 2) cell and returns (B, 3, H, W); every
query is still independent, so our flat form (B, Q, 2) gives the same values and can be chunked.
It differs from `lte` in its layout (conv `layers` instead of an `imnet`) and in how `freq`
holds its frequency pairs (two halves, not interleaved).
"""
from typing import Any, Dict, Optional

import torch
from torch import nn

from .decoder import ImplicitDecoder
from .lte import FourierFeat, decode_fourier
from .mlp import pointwise
from .models import make, register


@register('lte-fast')
class LTEFast(ImplicitDecoder):
    """Args (official names):
        encoder_spec: model spec of the encoder (no upsampling).
        num_layer: hidden 1x1 conv layers of the decoder.
        hidden_dim: number of Fourier components D, and the width of the decoder.
        out_dim: output channels.
    """
    grid_queries = True

    def __init__(self, encoder_spec: Dict[str, Any], num_layer: int = 3, hidden_dim: int = 256,
                 out_dim: int = 3):
        super().__init__()
        self.encoder = make(encoder_spec)
        self.coef = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        layers = []
        for _ in range(num_layer):
            layers += [nn.Conv2d(hidden_dim, hidden_dim, 1), nn.ReLU()]
        layers.append(nn.Conv2d(hidden_dim, out_dim, 1))
        self.layers = nn.Sequential(*layers)

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> FourierFeat:
        """Amplitudes and frequencies of every (B, C, h, w) latent code of the input."""
        return FourierFeat(self.coef(codes), self.freq(codes), inp)

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 conv stack applied to (B, Q, D) queries, as the linear maps they are."""
        for layer in self.layers:
            x = pointwise(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)
        return x

    def query(self, feat: FourierFeat, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, Q, 2) coords, (B, Q, 2) cells -> (B, Q, 3) normalised RGB."""
        return decode_fourier(feat, coord, cell, self.phase, self._decode, interleaved=False)
