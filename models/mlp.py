"""The decoding function f_theta of LIIF: a plain ReLU MLP."""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import register


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to (..., C) tokens: the linear map it is."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


@register('mlp')
class MLP(nn.Module):
    """Linear-ReLU stack applied to the last dimension.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden_list: widths of the hidden layers.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]):
        super().__init__()
        layers = []
        last = in_dim
        for hidden in hidden_list:
            layers.append(nn.Linear(last, hidden))
            layers.append(nn.ReLU())
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
        same values as `forward`, with less memory traffic)."""
        for layer in self.layers[start:]:
            x = x.relu_() if isinstance(layer, nn.ReLU) else layer(x)
        return x
