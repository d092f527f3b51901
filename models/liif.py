"""LIIF: Local Implicit Image Function (Chen et al., CVPR 2021).

An encoder turns the image into a grid of latent codes; the MLP `imnet` decodes the RGB at any
continuous coordinate from the nearest latent code(s), the relative coordinate and the cell size.
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from .decoder import Decoder, ImplicitDecoder
from .ensemble import (Lookup, area, blend, make_lookup, members, nearest_codes, relative_cell,
                       sample_bilinear, sample_nearest)
from .mlp import MLP
from .models import make, register

# The fast path decodes at most this many queries per call, so that its activations stay in
# cache (inference/ chunks to it).
FAST_CHUNK_SIZE = 4096


def unfold_3x3(feat: torch.Tensor) -> torch.Tensor:
    """Sec. 3.2 feature unfolding: concatenate each code's 3x3 neighbourhood (zero padded).

    (B, C, h, w) -> (B, 9C, h, w), channel order c*9 + (3*di + dj) as F.unfold gives.
    """
    B, C, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(B, C * 9, h, w)


class ProjectedFeat(NamedTuple):
    """Latent codes already multiplied by the decoder's first layer (the fast path).

    rows: (B, h*w, D) first-layer pre-activations of every code, bias included, row-major.
    lookup: nearest-code tables of the (h, w) grid.
    image: (B, 3, h, w) input image for the global skip, or None.
    """
    rows: torch.Tensor
    lookup: Lookup
    image: Optional[torch.Tensor]


@register('liif')
class LIIF(ImplicitDecoder):
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
    fast_chunk_size = FAST_CHUNK_SIZE

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

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latent codes of the (B, 3, h, w) input (C + 3 with global_skip)."""
        return torch.cat([codes, inp], dim=1) if self.global_skip else codes

    def _split_skip(self, feat: torch.Tensor):
        """(latent codes, input image or None) from `encode`'s output."""
        return (feat[:, :-3], feat[:, -3:]) if self.global_skip else (feat, None)

    @staticmethod
    def _add_skip(pred: torch.Tensor, image: Optional[torch.Tensor],
                  coord: torch.Tensor) -> torch.Tensor:
        return pred if image is None else pred + sample_bilinear(image, coord).to(pred.dtype)

    def check_feat(self, feat) -> None:
        """The latent codes must have the channels the MLP's first layer takes."""
        if self.imnet is None or not torch.is_tensor(feat) or feat.dim() != 4:
            return
        first = self.imnet.layers[0] if hasattr(self.imnet, 'layers') else None
        if not isinstance(first, torch.nn.Linear):
            return
        k = 9 if self.feat_unfold else 1
        expected = (first.in_features - (4 if self.cell_decode else 2)) // k
        got = feat.shape[1] - (3 if self.global_skip else 0)
        if got != expected:
            raise ValueError(f"this LIIF decodes {expected}-channel latent codes (its MLP's "
                             f"first layer), got features of shape {tuple(feat.shape)}")

    def _check_cell(self, cell: Optional[torch.Tensor]) -> None:
        if self.cell_decode and cell is None:
            raise ValueError("this LIIF model decodes with the cell size (cell_decode=True); "
                             "pass cell")

    def query(self, feat: torch.Tensor, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decodes RGB at continuous coordinates (the paper-faithful reference path).

        Args:
            feat: (B, C, h, w) latent codes from `encode`.
            coord: (B, Q, 2) query coordinates in (-1, 1), (row, col).
            cell: (B, Q, 2) query cell size (2/H, 2/W); needed when cell_decode is on.

        Returns:
            (B, Q, 3) RGB, normalised like the training targets.
        """
        feat, image = self._split_skip(feat)
        if self.imnet is None:
            return self._add_skip(sample_nearest(feat, coord), image, coord)
        self._check_cell(cell)
        if self.feat_unfold:
            feat = unfold_3x3(feat)
        h, w = feat.shape[-2:]
        preds, areas = [], []
        for (q_feat,), rel_coord in members([feat], coord, self.local_ensemble):
            inp = torch.cat([q_feat, rel_coord], dim=-1)
            if self.cell_decode:
                inp = torch.cat([inp, relative_cell(cell, h, w)], dim=-1)
            preds.append(self.imnet(inp))
            areas.append(area(rel_coord))
        return self._add_skip(blend(preds, areas, self.local_ensemble), image, coord)

    # Fast path. The decoder's first layer is linear, and so is feature unfolding, so
    # first_layer(unfold(feat)) is a 3x3 convolution computed once per latent code; each query
    # then gathers that projection at its nearest code and adds the small coordinate and cell
    # terms. Nearest codes are found by sampling a map of row numbers with the same grid_sample
    # call as the reference, so ties and borders resolve identically.

    @property
    def supports_fast(self) -> bool:
        return isinstance(self.imnet, MLP)

    @property
    def exact_bands(self) -> bool:
        return self.supports_fast and not self.global_skip  # its skip samples the whole image

    def project(self, feat: torch.Tensor, rows: Optional[Tuple[int, int]] = None
                ) -> ProjectedFeat:
        """(B, C, h, w) latent codes -> first-layer projections of every code (fast path);
        rows: (first row, grid rows) when they are a band of a larger grid."""
        feat, image = self._split_skip(feat)
        first = self.imnet.layers[0]
        C = feat.shape[1]
        k = 3 if self.feat_unfold else 1
        # Unfolded channel c*9 + (3*di + dj) is conv weight [:, c, di, dj].
        weight = first.weight[:, :C * k * k].reshape(-1, C, k, k)
        # Kept in float32 even under autocast: it is computed once per code, so it is cheap,
        # and rounding these 576-term sums to 16 bits would cost most of the precision.
        # In channels-last layout the convolution writes each code's projection as one
        # contiguous row: the (B, h*w, D) table is then a view, not a second copy (a 1080p
        # input's table is 2 GB).
        with torch.autocast(feat.device.type, enabled=False):
            proj = F.conv2d(feat.float().contiguous(memory_format=torch.channels_last),
                            weight.float(), first.bias.float(), padding=k // 2)
        B, D, h, w = proj.shape
        table = proj.permute(0, 2, 3, 1).reshape(B, h * w, D)
        first, grid_rows = rows or (0, h)
        return ProjectedFeat(table, make_lookup(grid_rows, w, first, h), image)

    def fast_decoder(self, feat: torch.Tensor, rows: Optional[Tuple[int, int]] = None
                     ) -> Decoder:
        proj = self.project(feat, rows)
        return lambda coord, cell: self.query_projected(proj, coord, cell)

    def query_projected(self, proj: ProjectedFeat, coord: torch.Tensor,
                        cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fast-path query: as `query` from `project(feat)`. (B, Q, 2) -> (B, Q, 3)."""
        self._check_cell(cell)
        B, Q = coord.shape[:2]
        h, w = proj.lookup.h, proj.lookup.w
        first = self.imnet.layers[0]
        n_feat = first.in_features - (4 if self.cell_decode else 2)
        # Weights of the (relative coordinate, relative cell) inputs, (2 or 4, D).
        w_small = first.weight[:, n_feat:].t()
        rel_cell = cell * coord.new_tensor([h, w]) if self.cell_decode else None
        table = proj.rows.reshape(-1, proj.rows.shape[-1])  # (B * held rows * w, D)
        code_rows, rel_coords = nearest_codes(proj.lookup, coord, self.local_ensemble)
        preds, areas = [], []
        for k in range(code_rows.shape[1]):
            rel_coord = rel_coords[:, k]
            small = rel_coord if rel_cell is None else torch.cat([rel_coord, rel_cell], dim=-1)
            q_proj = table.index_select(0, code_rows[:, k].reshape(-1))
            hidden = torch.addmm(q_proj, small.reshape(B * Q, -1).to(table.dtype),
                                 w_small.to(table.dtype))
            preds.append(self.imnet.forward_inplace(hidden, start=1).view(B, Q, -1))
            areas.append(area(rel_coord))
        return self._add_skip(blend(preds, areas, self.local_ensemble), proj.image, coord)
