"""LTE: Local Texture Estimator (Lee & Jin, CVPR 2022), official layout of jaewon-lee-b/lte.

LIIF's decoder, fed not the latent code itself but a Fourier basis: from the encoder's features
a 3x3 conv estimates amplitudes (`coef`) and frequencies (`freq`) for every latent code, a
linear layer a phase from the cell (`phase`); a query decodes
    imnet(coef * [cos(pi (F delta + phase)), sin(pi (F delta + phase))])
with delta its position relative to the code, blended over the 4 nearest codes (LIIF's local
ensemble), plus bilinear interpolation of the input.
"""
import math
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import nn

from .decoder import Decoder, ImplicitDecoder
from .ensemble import (Lookup, area, blend, make_lookup, members, nearest_codes, relative_cell,
                       sample_bilinear)
from .mlp import MLP
from .models import make, register

# On a CPU the fast path decodes at most this many queries per call (inference's chunk
# policy), and runs its MLP over blocks of this many rows (the 4 ensemble members of each
# query are 4 rows), so that its activations stay in cache. On a GPU the MLP runs over all the
# rows at once: small blocks there would be thousands of kernel launches per call.
FAST_CHUNK_SIZE = 4096
MLP_BLOCK_ROWS = 512


class FourierFeat(NamedTuple):
    """What LTE and lte-fast keep per image.

    coef, freq: (B, D, h, w) amplitude and frequency estimates of every latent code.
    inp: (B, 3, h, w) the normalised input, for the bilinear skip.
    """
    coef: torch.Tensor
    freq: torch.Tensor
    inp: torch.Tensor


def fourier_basis(q_freq: torch.Tensor, rel_coord: torch.Tensor, phase: torch.Tensor,
                  interleaved: bool = True) -> torch.Tensor:
    """The local Fourier basis of each query (Eq. 5 of the LTE paper).

    Args:
        q_freq: (B, Q, D) frequencies of the query's code: D/2 (row, col) frequency pairs,
            interleaved (f0_row, f0_col, f1_row, ...) as LTE has them, or as two halves (all
            row frequencies, then all column ones) as lte-fast has them.
        rel_coord: (B, Q, 2) query relative to the code, in latent-cell units.
        phase: (B, Q, D/2) phase from the cell.

    Returns:
        (B, Q, D): cos of the D/2 phases, then sin.
    """
    B, Q, D = q_freq.shape
    pairs = q_freq.view(B, Q, D // 2, 2) if interleaved else \
        q_freq.view(B, Q, 2, D // 2).transpose(-1, -2)
    angle = (pairs * rel_coord.unsqueeze(-2)).sum(dim=-1) + phase
    return torch.cat((torch.cos(math.pi * angle), torch.sin(math.pi * angle)), dim=-1)


def decode_fourier(feat: FourierFeat, coord: torch.Tensor, cell: Optional[torch.Tensor],
                   phase_layer: nn.Module, decode: Callable[[torch.Tensor], torch.Tensor],
                   interleaved: bool) -> torch.Tensor:
    """The reference query of LTE and lte-fast, as the official code computes it.

    Args:
        feat: from `encode`.
        coord, cell: (B, Q, 2) queries and their cells.
        phase_layer: the cell -> phase linear layer.
        decode: the MLP, (B, Q, D) -> (B, Q, 3).
        interleaved: how `freq` holds its frequency pairs (see fourier_basis).

    Returns:
        (B, Q, 3): the 4 codes' decodings blended by area, plus bilinear interpolation.
    """
    if cell is None:
        raise ValueError("LTE decodes with the cell size; pass cell")
    h, w = feat.coef.shape[-2:]
    rel_cell = relative_cell(cell, h, w)
    preds, areas = [], []
    for (q_coef, q_freq), rel_coord in members([feat.coef, feat.freq], coord):
        # The phase once per code, as the official code computes it: the same values, and
        # the same rounding of its weight's gradient (4 products summed, not one).
        phase = phase_layer(rel_cell)
        preds.append(decode(q_coef * fourier_basis(q_freq, rel_coord, phase, interleaved)))
        areas.append(area(rel_coord))
    return blend(preds, areas) + sample_bilinear(feat.inp, coord)


class FourierTables(NamedTuple):
    """Fast path: (coef | freq) of every code as rows (B*h*w, 2D), and the lookup tables."""
    rows: torch.Tensor
    lookup: Lookup
    inp: torch.Tensor


@register('lte')
class LTE(ImplicitDecoder):
    """Args (official names):
        encoder_spec: model spec of the encoder (edsr-baseline, rdn or swinir, no upsampling).
        imnet_spec: model spec of the decoder MLP (its in_dim is set to hidden_dim).
        hidden_dim: number of Fourier components D (D/2 frequencies, each as cos and sin).
    """
    fast_chunk_size = FAST_CHUNK_SIZE

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Optional[Dict[str, Any]] = None,
                 hidden_dim: int = 256):
        super().__init__()
        if imnet_spec is None:
            raise ValueError("lte needs imnet_spec (the decoder MLP), e.g. {name: mlp, args: "
                             "{out_dim: 3, hidden_list: [256, 256, 256]}}")
        self.encoder = make(encoder_spec)
        self.coef = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(self.encoder.out_dim, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = make(imnet_spec, args={'in_dim': hidden_dim})

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> FourierFeat:
        """Amplitudes and frequencies of every (B, C, h, w) latent code of the input."""
        return FourierFeat(self.coef(codes), self.freq(codes), inp)

    def query(self, feat: FourierFeat, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Reference path. (B, Q, 2) coords and cells -> (B, Q, 3) normalised RGB."""
        return decode_fourier(feat, coord, cell, self.phase, self.imnet, interleaved=True)

    # Fast path: the four codes of each query are found with one lookup each on a map of row
    # numbers (instead of three grid_sample calls over D channels), coef and freq are gathered
    # as one row, the phase is computed once, the basis is written straight into the MLP's
    # input, and on a CPU the MLP runs over blocks of rows small enough for its activations
    # to stay in cache (its matrix products are most of the cost).

    @property
    def supports_fast(self) -> bool:
        return isinstance(self.imnet, MLP)

    @property
    def exact_bands(self) -> bool:
        return True

    def fast_decoder(self, feat: FourierFeat, rows: Optional[Tuple[int, int]] = None
                     ) -> Decoder:
        """rows: (first row, grid rows) when feat holds a band of a larger grid (its `inp`
        the whole input, for the bilinear skip)."""
        B, D, h, w = feat.coef.shape
        first, grid_rows = rows or (0, h)
        # Row layout [coef | row frequencies | column frequencies]: the interleaved pairs of
        # `freq` split into two contiguous halves.
        freq = feat.freq.view(B, D // 2, 2, h, w).transpose(1, 2).reshape(B, D, h, w)
        table = torch.cat([feat.coef, freq], dim=1).view(B, 2 * D, h * w).transpose(1, 2)
        tables = FourierTables(table.reshape(B * h * w, 2 * D).contiguous(),
                               make_lookup(grid_rows, w, first, h), feat.inp)
        return lambda coord, cell: self.query_tables(tables, coord, cell)

    def query_tables(self, tables: FourierTables, coord: torch.Tensor,
                     cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fast-path query: as `query`, from `fast_decoder`'s tables. (B, Q, 2) -> (B, Q, 3)."""
        if cell is None:
            raise ValueError("lte decodes with the cell size; pass cell")
        B, Q = coord.shape[:2]
        h, w = tables.lookup.h, tables.lookup.w
        D, half = tables.rows.shape[1] // 2, tables.rows.shape[1] // 4
        phase = self.phase(relative_cell(cell, h, w)).view(B * Q, half)
        code_rows, rel_coords = nearest_codes(tables.lookup, coord)
        inputs, areas = [], []
        for k in range(code_rows.shape[1]):
            rel_coord = rel_coords[:, k]
            row = tables.rows.index_select(0, code_rows[:, k].reshape(-1))
            rel = rel_coord.reshape(B * Q, 2, 1).to(row.dtype)
            angle = row[:, D:D + half] * rel[:, 0]
            angle = angle.add_(row[:, D + half:] * rel[:, 1]).add_(phase).mul_(math.pi)
            # In place only on fresh results, so that training can use this path too.
            basis = torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
            inputs.append(basis.mul_(row[:, :D]))
            areas.append(area(rel_coord))
        x = torch.stack(inputs).view(4 * B * Q, D)
        block = MLP_BLOCK_ROWS if x.device.type == 'cpu' else x.shape[0]
        out = torch.cat([self.imnet.forward_inplace(rows) for rows in x.split(block)])
        return blend(list(out.view(4, B, Q, -1)), areas) + sample_bilinear(tables.inp, coord)
