"""Galerkin-type attention (Cao, NeurIPS 2021) as SRNO uses it: official `simple_attn` of
2y7c3/Super-Resolution-Neural-Operator, registered as `galerkin`.

Softmax-free linear attention: keys and values are layer-normalised per head, and the output is
Q (K^T V) / N over the N tokens, so the tokens interact only through the (C/heads)^2 sums K^T V.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .mlp import pointwise
from .models import register


class HeadLayerNorm(nn.Module):
    """The official LayerNorm of SRNO over the last dimension: (x - mean) / (std + eps), with
    the unbiased std and eps outside the root (not torch's LayerNorm), affine per head.

    Args:
        shape: affine parameter shape, (heads, 1, head_channels).
        eps: added to the std.
    """

    def __init__(self, shape, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.weight * ((x - mean) / (std + self.eps)) + self.bias


@register('galerkin')
class GalerkinAttention(nn.Module):
    """Args (official names): midc: channels C; heads: attention heads (C % heads == 0)."""

    def __init__(self, midc: int, heads: int):
        super().__init__()
        if midc % heads:
            raise ValueError(f"galerkin: midc {midc} is not divisible by heads {heads}")
        self.headc = midc // heads
        self.heads = heads
        self.midc = midc
        self.qkv_proj = nn.Conv2d(midc, 3 * midc, 1)
        self.o_proj1 = nn.Conv2d(midc, midc, 1)
        self.o_proj2 = nn.Conv2d(midc, midc, 1)
        self.kln = HeadLayerNorm((heads, 1, self.headc))
        self.vln = HeadLayerNorm((heads, 1, self.headc))

    def _qkv(self, x: torch.Tensor):
        """(B, N, C) tokens -> q, k, v, each (B, heads, N, C/heads)."""
        B, N, _ = x.shape
        qkv = pointwise(self.qkv_proj, x).view(B, N, self.heads, 3 * self.headc)
        return qkv.transpose(1, 2).chunk(3, dim=-1)

    def _kv(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.kln(k).transpose(-2, -1), self.vln(v))

    def _output(self, x: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        B, n, C = x.shape
        attn = torch.matmul(q, kv).transpose(1, 2).reshape(B, n, C)
        hidden = F.gelu(pointwise(self.o_proj1, attn + x))
        return pointwise(self.o_proj2, hidden) + x

    def kv_sum(self, x: torch.Tensor) -> torch.Tensor:
        """(B, heads, C/heads, C/heads) sum of LN(k)^T LN(v) over the tokens of x: the only
        way tokens see each other, so it can be summed over chunks of the tokens."""
        _, k, v = self._qkv(x)
        return self._kv(k, v)

    def attend(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """(B, n, C) tokens -> (B, n, C), given kv = kv_sum over all N tokens, divided by N."""
        return self._output(x, self._qkv(x)[0], kv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens -> (B, N, C); every token attends to all N."""
        q, k, v = self._qkv(x)
        return self._output(x, q, self._kv(k, v) / x.shape[1])
