"""LIIF: Local Implicit Image Function (Chen et al., CVPR 2021).

An encoder turns the image into a grid of latent codes; the MLP `imnet` decodes the RGB at any
continuous coordinate from the nearest latent code(s), the relative coordinate and the cell size.
"""
from typing import Any, Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from utils.coords import make_coord
from .mlp import MLP
from .models import make, register
from .query import check_impl, decode_in_chunks


# Sec. 3.3 local ensemble: a tiny shift breaks ties when a query sits exactly on the boundary
# between two latent codes, and coordinates are kept strictly inside (-1, 1).
EPS_SHIFT = 1e-6
BORDER_EPS = 1e-6
# Keeps ensemble weights positive when a query falls exactly on a latent code.
AREA_EPS = 1e-9
# The fast path decodes queries in blocks of this size, so that its activations stay in cache.
FAST_BLOCK = 4096


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


class ProjectedFeat(NamedTuple):
    """Latent codes already multiplied by the decoder's first layer (the fast path).

    rows: (B, h*w, D) first-layer pre-activations of every code, bias included, row-major.
    index: (1, 1, h, w) float map of each code's row number, sampled to find nearest codes.
    coord: (h*w, 2) centre of every code, (row, col).
    image: (B, 3, h, w) input image for the global skip, or None.
    """
    rows: torch.Tensor
    index: torch.Tensor
    coord: torch.Tensor
    image: Optional[torch.Tensor]


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
        global_skip: add the bilinear interpolation of the input image to the decoded RGB, so
            the network learns only the residual (not in the paper; off in official configs;
            it adds no parameters). The latent grid from `encode` then carries the input
            image as its last 3 channels.
    """

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Optional[Dict[str, Any]] = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True,
                 global_skip: bool = False):
        super().__init__()
        self.global_skip = global_skip
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
        """(B, 3, h, w) normalised image -> (B, C, h, w) latent codes (C + 3 with global_skip)."""
        feat = self.encoder(inp)
        return torch.cat([feat, inp], dim=1) if self.global_skip else feat

    def _split_skip(self, feat: torch.Tensor):
        """(latent codes, input image or None) from `encode`'s output."""
        return (feat[:, :-3], feat[:, -3:]) if self.global_skip else (feat, None)

    @staticmethod
    def _add_skip(pred: torch.Tensor, image: Optional[torch.Tensor],
                  coord: torch.Tensor) -> torch.Tensor:
        if image is None:
            return pred
        base = F.grid_sample(image, coord.flip(-1).unsqueeze(1), mode='bilinear',
                             padding_mode='border', align_corners=False)[:, :, 0, :]
        return pred + base.permute(0, 2, 1).to(pred.dtype)

    def _shifts(self):
        """Offsets (in half latent cells) of the codes blended for each query, and the tie shift."""
        if self.local_ensemble:
            return [(-1, -1), (-1, 1), (1, -1), (1, 1)], EPS_SHIFT
        return [(0, 0)], 0

    @staticmethod
    def _shifted(coord: torch.Tensor, vx: int, vy: int, h: int, w: int,
                 eps_shift: float) -> torch.Tensor:
        """Query moved by (vx, vy) half latent cells (+ tie shift), kept inside (-1, 1)."""
        coord_ = coord.clone()
        coord_[:, :, 0] += vx / h + eps_shift
        coord_[:, :, 1] += vy / w + eps_shift
        return coord_.clamp_(-1 + BORDER_EPS, 1 - BORDER_EPS)

    def _check_cell(self, cell: Optional[torch.Tensor]) -> None:
        if self.cell_decode and cell is None:
            raise ValueError("this LIIF model decodes with the cell size (cell_decode=True); "
                             "pass cell")

    @staticmethod
    def _blend(preds, areas, local_ensemble: bool) -> torch.Tensor:
        """Eq. 4: each code's prediction weighted by the area of the opposite rectangle."""
        tot_area = torch.stack(areas).sum(dim=0)
        if local_ensemble:
            areas = areas[::-1]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1)
        return ret

    def query(self, feat: torch.Tensor, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None, impl: str = 'reference') -> torch.Tensor:
        """Decodes RGB at continuous coordinates.

        Args:
            feat: (B, C, h, w) latent codes from `encode`.
            coord: (B, Q, 2) query coordinates in (-1, 1), (row, col).
            cell: (B, Q, 2) query cell size (2/H, 2/W); needed when cell_decode is on.
            impl: 'reference' (the paper-faithful path below) or 'fast' (`project` once,
                then `query_projected`; same result up to float rounding).

        Returns:
            (B, Q, 3) RGB, normalised like the training targets.
        """
        check_impl(impl)
        if impl == 'fast' and self.supports_fast:
            return self.query_projected(self.project(feat), coord, cell)
        feat, image = self._split_skip(feat)
        if self.imnet is None:
            return self._add_skip(sample_nearest(feat, coord), image, coord)
        self._check_cell(cell)
        if self.feat_unfold:
            feat = unfold_3x3(feat)
        h, w = feat.shape[-2:]
        feat_coord = make_coord((h, w), flatten=False, device=feat.device, dtype=feat.dtype)
        feat_coord = feat_coord.permute(2, 0, 1).unsqueeze(0).expand(feat.shape[0], 2, h, w)

        shifts, eps_shift = self._shifts()
        preds, areas = [], []
        for vx, vy in shifts:
            coord_ = self._shifted(coord, vx, vy, h, w, eps_shift)
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
        return self._add_skip(self._blend(preds, areas, self.local_ensemble), image, coord)

    # Fast path. The decoder's first layer is linear, and so is feature unfolding, so
    # first_layer(unfold(feat)) is a 3x3 convolution computed once per latent code; each query
    # then gathers that projection at its nearest code and adds the small coordinate and cell
    # terms. Nearest codes are found by sampling a map of row numbers with the same grid_sample
    # call as the reference, so ties and borders resolve identically.

    @property
    def supports_fast(self) -> bool:
        return isinstance(self.imnet, MLP)

    def project(self, feat: torch.Tensor) -> ProjectedFeat:
        """(B, C, h, w) latent codes -> first-layer projections of every code (fast path)."""
        feat, image = self._split_skip(feat)
        first = self.imnet.layers[0]
        C = feat.shape[1]
        k = 3 if self.feat_unfold else 1
        # Unfolded channel c*9 + (3*di + dj) is conv weight [:, c, di, dj].
        weight = first.weight[:, :C * k * k].reshape(-1, C, k, k)
        # Kept in float32 even under autocast: it is computed once per code, so it is cheap,
        # and rounding these 576-term sums to 16 bits would cost most of the precision.
        with torch.autocast(feat.device.type, enabled=False):
            proj = F.conv2d(feat.float(), weight.float(), first.bias.float(), padding=k // 2)
        B, D, h, w = proj.shape
        index = torch.arange(h * w, device=feat.device, dtype=torch.float32).view(1, 1, h, w)
        coord = make_coord((h, w), device=feat.device)
        return ProjectedFeat(proj.view(B, D, h * w).transpose(1, 2).contiguous(), index, coord,
                             image)

    def query_projected(self, proj: ProjectedFeat, coord: torch.Tensor,
                        cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fast-path query: as `query(..., impl='reference')` from `project(feat)`.

        Args:
            proj: from `project(feat)`.
            coord, cell: (B, Q, 2) as for `query`.

        Returns:
            (B, Q, 3).
        """
        self._check_cell(cell)
        return decode_in_chunks(lambda c, ce: self._query_projected_block(proj, c, ce),
                                coord, cell, FAST_BLOCK)

    def _query_projected_block(self, proj: ProjectedFeat, coord: torch.Tensor,
                               cell: Optional[torch.Tensor]) -> torch.Tensor:
        B, Q = coord.shape[:2]
        h, w = proj.index.shape[-2:]
        first = self.imnet.layers[0]
        n_feat = first.in_features - (4 if self.cell_decode else 2)
        # Weights of the (relative coordinate, relative cell) inputs, (2 or 4, D).
        w_small = first.weight[:, n_feat:].t()
        scale = coord.new_tensor([h, w])
        rel_cell = cell * scale if self.cell_decode else None
        rows = proj.rows.reshape(B * h * w, -1)
        batch_offset = (torch.arange(B, device=coord.device) * (h * w)).view(B, 1)

        shifts, eps_shift = self._shifts()
        preds, areas = [], []
        for vx, vy in shifts:
            coord_ = self._shifted(coord, vx, vy, h, w, eps_shift)
            with torch.autocast(coord.device.type, enabled=False):
                idx = sample_nearest(proj.index.expand(B, 1, h, w), coord_.float()).view(B, Q)
            idx = idx.long()
            rel_coord = (coord - proj.coord[idx]) * scale
            small = rel_coord if rel_cell is None else torch.cat([rel_coord, rel_cell], dim=-1)
            q_proj = rows.index_select(0, (idx + batch_offset).view(-1))
            hidden = torch.addmm(q_proj, small.reshape(B * Q, -1).to(rows.dtype),
                                 w_small.to(rows.dtype))
            preds.append(self._decode_hidden(hidden).view(B, Q, -1))
            areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + AREA_EPS)
        return self._add_skip(self._blend(preds, areas, self.local_ensemble), proj.image, coord)

    def _decode_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """imnet after its first linear layer, with ReLUs in place to save memory traffic."""
        for layer in self.imnet.layers[1:]:
            x = x.relu_() if isinstance(layer, nn.ReLU) else layer(x)
        return x

    def forward(self, inp: torch.Tensor, coord: torch.Tensor,
                cell: Optional[torch.Tensor] = None, impl: str = 'reference') -> torch.Tensor:
        """(B, 3, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3); see `query`."""
        return self.query(self.encode(inp), coord, cell, impl)

    # Official two-step API, kept for compatibility with code written for the official repo.
    # It is the only place a model holds a tensor between calls.
    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        self.feat = self.encode(inp)
        return self.feat

    def query_rgb(self, coord: torch.Tensor, cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.query(self.feat, coord, cell)
