"""LIIF: Local Implicit Image Function (Chen et al., CVPR 2021).

An encoder turns the image into a grid of latent codes; the MLP `imnet` decodes the RGB at any
continuous coordinate from the nearest latent code(s), the relative coordinate and the cell size.
"""
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from utils.coords import make_coord
from .models import make, register

# Sec. 3.3 local ensemble: a tiny shift breaks ties when a query sits exactly on the boundary
# between two latent codes, and coordinates are kept strictly inside (-1, 1).
EPS_SHIFT = 1e-6
BORDER_EPS = 1e-6
# Keeps ensemble weights positive when a query falls exactly on a latent code.
AREA_EPS = 1e-9


def sample_nearest(x: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Value of the grid cell that holds each coordinate.

    Args:
        x: (B, C, h, w) grid.
        coord: (B, Q, 2) in [-1, 1], (row, col).

    Returns:
        (B, Q, C).
    """
    return F.grid_sample(x, coord.flip(-1).unsqueeze(1), mode='nearest',
                         align_corners=False)[:, :, 0, :].permute(0, 2, 1)


def unfold_3x3(feat: torch.Tensor) -> torch.Tensor:
    """Sec. 3.2 feature unfolding: concatenate each code's 3x3 neighbourhood (zero padded).

    (B, C, h, w) -> (B, 9C, h, w), channel order c*9 + (3*di + dj) as F.unfold gives.
    """
    B, C, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(B, C * 9, h, w)


@register('liif')
class LIIF(nn.Module):
    """LIIF with the official switches.

    Args:
        encoder_spec: model spec of the encoder (e.g. edsr-baseline with no_upsampling).
        imnet_spec: model spec of the decoder MLP (its in_dim is set here), or None to sample
            the encoder's output with nearest interpolation (the fixed-scale baselines).
        local_ensemble: blend the 4 nearest codes by area (Sec. 3.2).
        feat_unfold: decode from 3x3-unfolded codes (Sec. 3.2).
        cell_decode: give the decoder the query's cell size (Sec. 3.3).
    """

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Optional[Dict[str, Any]] = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = make(encoder_spec)
        if imnet_spec is not None:
            in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2
            if cell_decode:
                in_dim += 2
            self.imnet = make(imnet_spec, args={'in_dim': in_dim})
        else:
            self.imnet = None

    def encode(self, inp: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised image -> (B, C, h, w) latent codes."""
        return self.encoder(inp)

    def query(self, feat: torch.Tensor, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decodes RGB at continuous coordinates (the paper-faithful path).

        Args:
            feat: (B, C, h, w) latent codes from `encode`.
            coord: (B, Q, 2) query coordinates in (-1, 1), (row, col).
            cell: (B, Q, 2) query cell size (2/H, 2/W); needed when cell_decode is on.

        Returns:
            (B, Q, 3) RGB, normalised like the training targets.
        """
        if self.imnet is None:
            return sample_nearest(feat, coord)
        if self.cell_decode and cell is None:
            raise ValueError("this LIIF model decodes with the cell size (cell_decode=True); "
                             "pass cell")
        if self.feat_unfold:
            feat = unfold_3x3(feat)

        if self.local_ensemble:
            shifts, eps_shift = [(-1, -1), (-1, 1), (1, -1), (1, 1)], EPS_SHIFT
        else:
            shifts, eps_shift = [(0, 0)], 0
        h, w = feat.shape[-2:]
        # Half the size of one latent cell in [-1, 1] units.
        rx, ry = 1 / h, 1 / w
        feat_coord = make_coord((h, w), flatten=False, device=feat.device, dtype=feat.dtype)
        feat_coord = feat_coord.permute(2, 0, 1).unsqueeze(0).expand(feat.shape[0], 2, h, w)

        preds, areas = [], []
        for vx, vy in shifts:
            coord_ = coord.clone()
            coord_[:, :, 0] += vx * rx + eps_shift
            coord_[:, :, 1] += vy * ry + eps_shift
            coord_.clamp_(-1 + BORDER_EPS, 1 - BORDER_EPS)
            q_feat = sample_nearest(feat, coord_)
            q_coord = sample_nearest(feat_coord, coord_)
            # Eq. 3: the decoder sees the query relative to its code, in latent-cell units.
            rel_coord = coord - q_coord
            rel_coord[:, :, 0] *= h
            rel_coord[:, :, 1] *= w
            inp = torch.cat([q_feat, rel_coord], dim=-1)
            if self.cell_decode:
                rel_cell = cell.clone()
                rel_cell[:, :, 0] *= h
                rel_cell[:, :, 1] *= w
                inp = torch.cat([inp, rel_cell], dim=-1)
            preds.append(self.imnet(inp))
            areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + AREA_EPS)

        tot_area = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            # Eq. 4: each code is weighted by the area of the rectangle at the opposite corner.
            areas = areas[::-1]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def forward(self, inp: torch.Tensor, coord: torch.Tensor,
                cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 3, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3); see `query`."""
        return self.query(self.encode(inp), coord, cell)

    # Official two-step API, kept for compatibility with code written for the official repo.
    # It is the only place a model holds a tensor between calls.
    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        self.feat = self.encode(inp)
        return self.feat

    def query_rgb(self, coord: torch.Tensor, cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.query(self.feat, coord, cell)
