"""LM-LIIF: LIIF with a latent modulated render MLP (LMF, He & Jin, CVPR 2024), official layout
of HeZongyao/LMF `lmliif`.

The hypernetwork reads each latent code's 3x3 unfolding (LIIF's feature unfolding) and the
cell; with `mod_input` its output ends with a compressed code (the render MLP's width) that
replaces the latent code as the render MLP's input, beside LIIF's relative coordinate and cell.
"""
from typing import Any, Dict, NamedTuple, Optional

import torch

from .ensemble import relative_cell
from .liif import unfold_3x3
from .lmf import LatentModulated, Modulated
from .models import make, register


class LMLIIFFeat(NamedTuple):
    """codes: (B, C, h, w) latent codes; inp: (B, 3, h, w) the normalised input."""
    codes: torch.Tensor
    inp: torch.Tensor


@register('lmliif')
class LMLIIF(LatentModulated):
    """Args (official names):
        encoder_spec: model spec of the encoder (no upsampling).
        imnet_spec: the render MLP, lmmlp {out_dim, hidden_dim, hidden_depth, mod_scale,
            mod_shift}; its in_dim is set here.
        hypernet_spec: the latent MLP, mlp {hidden_list}; in_dim and out_dim are set here.
        local_ensemble, feat_unfold, cell_decode: LIIF's switches.
        mod_input: decode from the hypernetwork's compressed code instead of the latent code.
        cmsr_spec: {'s2m_tables': {target scale: {decode scale: threshold}}, ...}: CMSR in
            `forward` beyond the training scales (models.cmsr), as the official test.py builds
            the model; None: off.
    """

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Optional[Dict[str, Any]] = None,
                 hypernet_spec: Optional[Dict[str, Any]] = None, local_ensemble: bool = True,
                 feat_unfold: bool = True, cell_decode: bool = True, mod_input: bool = False,
                 cmsr_spec: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.mod_input = mod_input
        self.encoder = make(encoder_spec)
        C = self.encoder.out_dim
        width = (imnet_spec or {}).get('args', {}).get('hidden_dim', 0)
        code_dim = width if mod_input else C
        self.build_decoder(imnet_spec, hypernet_spec,
                           hypernet_in=C * (9 if feat_unfold else 1) + (2 if cell_decode else 0),
                           extra_out=width if mod_input else 0,
                           imnet_in=code_dim + 2 + (2 if cell_decode else 0),
                           cmsr_spec=cmsr_spec)

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> LMLIIFFeat:
        return LMLIIFFeat(codes, inp)

    def modulate(self, feat: LMLIIFFeat, cell: Optional[torch.Tensor]) -> Modulated:
        """Hypernetwork over every code's (unfolded) code and (B, 2) cell in code units."""
        codes = feat.codes
        rich = unfold_3x3(codes) if self.feat_unfold else codes
        B, K, h, w = rich.shape
        x = rich.permute(0, 2, 3, 1).reshape(B, h * w, K)
        if self.cell_decode:
            rel_cell = relative_cell(cell, h, w).view(B, 1, 2).expand(B, h * w, 2)
            x = torch.cat([x, rel_cell.to(x.dtype)], dim=-1)
        mod = self.hypernet(x).view(B, h, w, -1).permute(0, 3, 1, 2)
        render = mod[:, self.mod_dim:] if self.mod_input else codes
        return Modulated(mod[:, :self.mod_dim], render, feat.inp)

    def render_input(self, q_codes: torch.Tensor, rel_coord: torch.Tensor,
                     rel_cell: Optional[torch.Tensor]) -> torch.Tensor:
        parts = [q_codes, rel_coord] + ([rel_cell] if rel_cell is not None else [])
        return torch.cat(parts, dim=-1)

    # Fast path: the code's and the cell's part of the first layer, W_code z + W_cell c + b,
    # is fixed per code (the tables are made per cell; without the cell term for CMSR).

    def first_layer(self, m: Modulated, cell: Optional[torch.Tensor]):
        first = self.imnet.layers[0]
        R = m.codes.shape[1]
        weight = first.weight.float()
        fixed = torch.einsum('brhw,dr->bdhw', m.codes.float(), weight[:, :R])
        fixed = fixed + first.bias.float().view(1, -1, 1, 1)
        if self.cell_decode and cell is not None:
            h, w = m.codes.shape[-2:]
            cell_term = relative_cell(cell, h, w).float() @ weight[:, R + 2:R + 4].t()
            fixed = fixed + cell_term.view(*cell_term.shape, 1, 1)
        return fixed, None, None

    def first_input(self, extra: Optional[torch.Tensor], rel_coord: torch.Tensor,
                    rel_cell: Optional[torch.Tensor], cell_term: Optional[torch.Tensor]):
        R = self.imnet.layers[0].in_features - (4 if self.cell_decode else 2)
        small = rel_coord if rel_cell is None else torch.cat([rel_coord, rel_cell], dim=-1)
        return small, self.imnet.layers[0].weight[:, R:R + small.shape[1]]
