"""MetaSR baseline (Hu et al. 2019) as evaluated in the LIIF paper, with its official layout.

A weight-prediction MLP maps (relative offset, scale) to the weights of a per-query 3x3 conv
over the unfolded latent codes.
"""
from typing import Any, Dict

import torch

from utils.coords import make_coord
from .decoder import ImplicitDecoder
from .ensemble import BORDER_EPS, EPS_SHIFT, sample_nearest
from .liif import unfold_3x3
from .models import make, register

META_HIDDEN = 256


@register('metasr')
class MetaSR(ImplicitDecoder):
    """Args: encoder_spec: model spec of the encoder (with no_upsampling)."""

    def __init__(self, encoder_spec: Dict[str, Any]):
        super().__init__()
        self.encoder = make(encoder_spec)
        self.imnet = make({'name': 'mlp', 'args': {
            'in_dim': 3, 'out_dim': self.encoder.out_dim * 9 * 3, 'hidden_list': [META_HIDDEN]}})

    def query(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3) RGB, normalised.

        Meta-upscale: the query's top-left corner picks the code, the scale comes from the cell.
        """
        if cell is None:
            raise ValueError("MetaSR needs the cell size; pass cell")
        feat = unfold_3x3(feat)
        h, w = feat.shape[-2:]
        # Coordinates of the top-left corner of each latent cell.
        feat_coord = make_coord((h, w), flatten=False, device=feat.device, dtype=feat.dtype)
        feat_coord[:, :, 0] -= (2 / h) / 2
        feat_coord[:, :, 1] -= (2 / w) / 2
        feat_coord = feat_coord.permute(2, 0, 1).unsqueeze(0).expand(feat.shape[0], 2, h, w)

        coord_ = coord.clone()
        coord_[:, :, 0] -= cell[:, :, 0] / 2
        coord_[:, :, 1] -= cell[:, :, 1] / 2
        coord_q = (coord_ + EPS_SHIFT).clamp(-1 + BORDER_EPS, 1 - BORDER_EPS)
        q_feat = sample_nearest(feat, coord_q)
        q_coord = sample_nearest(feat_coord, coord_q)

        rel_coord = coord_ - q_coord
        rel_coord[:, :, 0] *= h / 2
        rel_coord[:, :, 1] *= w / 2
        r_rev = cell[:, :, 0] * (h / 2)
        inp = torch.cat([rel_coord, r_rev.unsqueeze(-1)], dim=-1)

        bs, q = coord.shape[:2]
        weight = self.imnet(inp.view(bs * q, -1)).view(bs * q, feat.shape[1], 3)
        pred = torch.bmm(q_feat.contiguous().view(bs * q, 1, -1), weight)
        return pred.view(bs, q, 3)
