"""LM-LTE: LTE with a latent modulated render MLP (LMF, He & Jin, CVPR 2024), official layout
of HeZongyao/LMF `lmlte`.

LTE's 3x3 convolutions estimate each code's amplitudes (`coef`) and frequencies (`freq`); the
hypernetwork reads their product with the code's own Fourier basis at the cell's phase
(`phase`, no relative coordinate: it describes the code, not a query). With `mod_input` its
output ends with a compressed coef and freq (the render MLP's width each), from which each
query builds LTE's basis at its relative coordinate with a phase of its own (`imphase`); the
render MLP decodes it, plus bilinear interpolation of the input.
"""
import math
from typing import Any, Dict, Optional

import torch
from torch import nn

from .ensemble import relative_cell
from .lmf import LatentModulated, Modulated
from .lte import FourierFeat, fourier_basis
from .models import make, register


@register('lmlte')
class LMLTE(LatentModulated):
    """Args (official names):
        encoder_spec: model spec of the encoder (no upsampling).
        imnet_spec: the render MLP, lmmlp; its in_dim is set here.
        hypernet_spec: the latent MLP, mlp {hidden_list}; in_dim and out_dim are set here.
        hidden_dim: LTE's number of Fourier components of the latent grid.
        local_ensemble, cell_decode: LIIF's switches.
        mod_input: decode from the hypernetwork's compressed coef and freq.
        cmsr_spec: as lmliif's.
    """
    lr_skip = True
    cmsr_sample_max = 0.5

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Optional[Dict[str, Any]] = None,
                 hypernet_spec: Optional[Dict[str, Any]] = None, hidden_dim: int = 128,
                 local_ensemble: bool = True, cell_decode: bool = True, mod_input: bool = False,
                 cmsr_spec: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.cell_decode = cell_decode
        self.mod_input = mod_input
        self.encoder = make(encoder_spec)
        C = self.encoder.out_dim
        self.coef = nn.Conv2d(C, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(C, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        width = (imnet_spec or {}).get('args', {}).get('hidden_dim', 0)
        self._imphase_dim = width // 2 if mod_input else 0
        self.build_decoder(imnet_spec, hypernet_spec, hypernet_in=hidden_dim,
                           extra_out=2 * width if mod_input else 0,
                           imnet_in=width if mod_input else hidden_dim, cmsr_spec=cmsr_spec)

    def build_input_layers(self) -> None:
        if self._imphase_dim:
            self.imphase = nn.Linear(2, self._imphase_dim, bias=False)

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> FourierFeat:
        """Amplitudes and frequencies of every (B, C, h, w) latent code of the input."""
        return FourierFeat(self.coef(codes), self.freq(codes), inp)

    def modulate(self, feat: FourierFeat, cell: Optional[torch.Tensor]) -> Modulated:
        """Hypernetwork over coef * [cos, sin](pi (freq_row + freq_col + phase(cell)))."""
        B, D, h, w = feat.coef.shape
        coef = feat.coef.permute(0, 2, 3, 1).reshape(B, h * w, D)
        angle = feat.freq.permute(0, 2, 3, 1).reshape(B, h * w, D // 2, 2).sum(dim=-1)
        if self.cell_decode:
            angle = angle + self.phase(relative_cell(cell, h, w).to(angle.dtype)).view(B, 1, -1)
        basis = torch.cat((torch.cos(math.pi * angle), torch.sin(math.pi * angle)), dim=-1)
        mod = self.hypernet(coef * basis).view(B, h, w, -1).permute(0, 3, 1, 2)
        render = mod[:, self.mod_dim:] if self.mod_input else \
            torch.cat([feat.coef, feat.freq], dim=1)
        return Modulated(mod[:, :self.mod_dim], render, feat.inp)

    def render_input(self, q_codes: torch.Tensor, rel_coord: torch.Tensor,
                     rel_cell: Optional[torch.Tensor]) -> torch.Tensor:
        """LTE's basis at the query: coef * [cos, sin](pi (freq . rel_coord + phase(cell)))."""
        D = q_codes.shape[-1] // 2
        phase_layer = self.imphase if self.mod_input else self.phase
        phase = phase_layer(rel_cell) if rel_cell is not None else 0.0
        return q_codes[..., :D] * fourier_basis(q_codes[..., D:], rel_coord, phase)

    # Fast path: nothing of the first layer is fixed per code (the basis is not linear in the
    # code). The compressed coef and freq are gathered with the modulations, freq as all row
    # frequencies then all column ones, times pi; the phase of the cell (times pi) is computed
    # once per image.

    def first_layer(self, m: Modulated, cell: Optional[torch.Tensor]):
        B, R, h, w = m.codes.shape
        D = R // 2
        freq = m.codes[:, D:].reshape(B, D // 2, 2, h, w).transpose(1, 2).reshape(B, D, h, w)
        phase = None
        if self.cell_decode and cell is not None:
            phase = self.phase_of(relative_cell(cell, h, w).float()).float() * math.pi
        return None, torch.cat([m.codes[:, :D], freq * math.pi], dim=1), phase

    def phase_of(self, rel_cell: torch.Tensor) -> torch.Tensor:
        return (self.imphase if self.mod_input else self.phase)(rel_cell)

    def first_input(self, extra: torch.Tensor, rel_coord: torch.Tensor,
                    rel_cell: Optional[torch.Tensor], cell_term: Optional[torch.Tensor]):
        D = extra.shape[1] // 2
        half = D // 2
        if rel_cell is not None:
            cell_term = self.phase_of(rel_cell.to(extra.dtype)) * math.pi
        rel = rel_coord.to(extra.dtype)
        if cell_term is None:
            angle = extra[:, D:D + half] * rel[:, :1]
        else:
            angle = torch.addcmul(cell_term.to(extra.dtype), extra[:, D:D + half], rel[:, :1])
        angle = angle.addcmul_(extra[:, D + half:], rel[:, 1:])
        x = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1).mul_(extra[:, :D])
        return x, self.imnet.layers[0].weight
