"""CLIT's positional bias (`posenc`, official layout of jaroslaw1007/CLIT): a sinusoidal
encoding of a key's position relative to the query, projected to one logit bias per head."""
from typing import Tuple

import torch
from torch import nn

from .models import register

TYPES = ('sinusoid',)


@register('posenc')
class PositionEncoder(nn.Module):
    """Args (official names; the official configs use posenc_type 'sinusoid'):
        posenc_type: 'sinusoid' (the only type CLIT's configs use).
        posenc_scale: the frequencies are 2 ** linspace(0, posenc_scale, enc_dims / 4) - 1
            (so the first is 0), with no 2 pi.
        enc_dims: size of the encoding: [sin(y b), sin(x b), cos(y b), cos(x b)].
        head: attention heads (one bias each); set by CLIT.
        in_dims, hidden_dims, gamma, gauss_scale, complex_transform: accepted as the official
            configs write them; unused by 'sinusoid' (complex_transform must be false).
    """

    def __init__(self, posenc_type: str = 'sinusoid', complex_transform: bool = False,
                 posenc_scale: float = 6, gauss_scale: float = 1, in_dims: int = 2,
                 enc_dims: int = 256, hidden_dims: int = 32, head: int = 1, gamma: float = 1):
        super().__init__()
        if posenc_type not in TYPES or complex_transform:
            raise ValueError(f"posenc: posenc_type '{posenc_type}' with complex_transform "
                             f"{complex_transform} is not supported; CLIT's configs use "
                             "'sinusoid' without complex_transform")
        b = 2. ** torch.linspace(0, posenc_scale, enc_dims // 4) - 1
        b = torch.stack([b, torch.zeros_like(b)], dim=-1)
        # (enc_dims / 2, 2): (b, 0) rows for y, then (0, b) rows for x. Not a buffer: the
        # official state dict holds only `proj`.
        self.b_vals = torch.cat([b, torch.roll(b, 1, -1)], dim=0)
        self.proj = nn.Linear(enc_dims, head)

    def forward(self, positions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(..., 2) relative (row, col) positions -> ((..., enc_dims) encoding, (..., head)
        bias)."""
        angles = torch.matmul(positions, self.b_vals.to(positions).transpose(-2, -1))
        encoding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        return encoding, self.proj(encoding)
