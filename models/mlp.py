"""The decoding function f_theta of LIIF: a plain MLP (ReLU; CLIT's configs ask for GELU)."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import register


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to (..., C) tokens: the linear map it is."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


ACTIVATIONS = {'relu': nn.ReLU, 'gelu': nn.GELU}


@register('mlp')
class MLP(nn.Module):
    """Linear-activation stack applied to the last dimension.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden_list: widths of the hidden layers.
        act: 'relu' (LIIF, LTE, ...), 'gelu' (CLIT) or None (no activation, as CLIT's MLP
            allows; its layers are then numbered without gaps, as in the official code).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int],
                 act: Optional[str] = 'relu'):
        super().__init__()
        if act is not None and str(act).lower() not in ACTIVATIONS:
            raise ValueError(f"mlp: unknown act '{act}'; expected relu, gelu or null")
        layers = []
        last = in_dim
        for hidden in hidden_list:
            layers.append(nn.Linear(last, hidden))
            if act is not None:
                layers.append(ACTIVATIONS[act.lower()]())
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        shape = x.shape[:-1]
        x = self.layers(x.reshape(-1, x.shape[-1]))
        return x.view(*shape, -1)

    def forward_inplace(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(N, D) -> (N, out_dim) from layer `start` on, ReLUs in place (the fast paths: the
        same values as `forward`, with less memory traffic); other activations as they are."""
        for layer in self.layers[start:]:
            x = x.relu_() if isinstance(layer, nn.ReLU) else layer(x)
        return x
