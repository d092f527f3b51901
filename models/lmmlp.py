"""LMF's render MLP (He & Jin, CVPR 2024), official layout of HeZongyao/LMF `lmmlp`.

A narrow ReLU MLP whose hidden layers are modulated per query: after hidden linear layer l,
    x <- x * (1 + scale_l) + shift_l
with scale_l, shift_l the hidden_dim-wide slices of the modulation vector that LMF's
hypernetwork computes once per latent code. The vector's layout, as the official code has it:
all the scales (layer 0, layer 1, ...), then all the shifts; either half absent when
mod_scale or mod_shift is off.
"""
from typing import Optional

import torch
from torch import nn

from .models import register


@register('lmmlp')
class LMMLP(nn.Module):
    """Args (official names):
        in_dim, out_dim: input and output features.
        hidden_dim: width of every hidden layer (16 in LMF's configs).
        hidden_depth: number of hidden (modulated) layers.
        mod_scale, mod_shift: which modulations the hidden layers take.
        mod_up_merge: the official code's memory switch for how modulations are upsampled; the
            LMF models always build the MLP with it off, and it changes nothing here.
        use_conv: official 1x1-convolution layers; not used by any LMF config, refused.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, hidden_depth: int,
                 mod_scale: bool = True, mod_shift: bool = True, mod_up_merge: bool = False,
                 use_conv: bool = False):
        super().__init__()
        if use_conv:
            raise ValueError("lmmlp: use_conv=True (1x1-convolution layers) is not supported; "
                             "no LMF config uses it, expected use_conv: false")
        if hidden_depth < 1 or hidden_dim < 1:
            raise ValueError(f"lmmlp needs hidden_depth >= 1 and hidden_dim >= 1, got "
                             f"{hidden_depth} and {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.hidden_depth = hidden_depth
        self.mod_scale = mod_scale
        self.mod_shift = mod_shift
        layers = []
        last = in_dim
        for _ in range(hidden_depth):
            layers += [nn.Linear(last, hidden_dim), nn.ReLU()]
            last = hidden_dim
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    @property
    def mod_dim(self) -> int:
        """Length of the modulation vector of one query: (scales + shifts) x depth x width."""
        return (int(self.mod_scale) + int(self.mod_shift)) * self.hidden_depth * self.hidden_dim

    def shift_offset(self) -> int:
        """Where the shifts start in the modulation vector."""
        return self.hidden_depth * self.hidden_dim if self.mod_scale else 0

    def forward(self, x: torch.Tensor, mod: torch.Tensor,
                first: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, in_dim) inputs and (N, mod_dim) modulations -> (N, out_dim).

        first: (N, hidden_dim) output of the first linear layer when the caller computed it
            (LMF's fast paths fold it per latent code); x is then not read.
        """
        width, shift0 = self.hidden_dim, self.shift_offset()
        h = self.layers[0](x) if first is None else first
        for layer in range(self.hidden_depth):
            if layer:
                h = self.layers[2 * layer](torch.relu(h))
            lo = layer * width
            if self.mod_scale:
                h = h * (mod[:, lo:lo + width] + 1.0)
            if self.mod_shift:
                h = h + mod[:, shift0 + lo:shift0 + lo + width]
        return self.layers[-1](torch.relu(h))
