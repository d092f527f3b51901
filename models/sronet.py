"""SRNO: Super-Resolution Neural Operator (Wei & Zhang, CVPR 2023), official layout of
2y7c3/Super-Resolution-Neural-Operator (`sronet`).

The lifting step gathers, for every query, the 4 nearest latent codes weighted by LIIF's
ensemble areas, their relative coordinates and the cell; a 1x1 conv lifts that to `width`
channels; two Galerkin attention layers (the kernel integrals) mix all queries; a pointwise
MLP projects to RGB, plus bilinear interpolation of the input. Because of the attention, a
query's value depends on every other query decoded with it: the model is `whole_grid`.
"""
from typing import Any, Callable, Dict, Iterable, Iterator, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import ImplicitDecoder
from .ensemble import area, members, relative_cell, sample_bilinear
from .galerkin import GalerkinAttention
from .mlp import pointwise
from .models import make, register

# The official lifting layer is built for 64-channel latent codes, whatever the encoder gives.
CODE_DIM = 64
PROJECTION_DIM = 256


class SRNOFeat(NamedTuple):
    """feat: (B, 64, h, w) latent codes; inp: (B, 3, h, w) normalised input."""
    feat: torch.Tensor
    inp: torch.Tensor


@register('sronet')
class SRNO(ImplicitDecoder):
    """Args (official names):
        encoder_spec: model spec of the encoder; it must give 64-channel codes.
        width: channels of the attention layers.
        blocks: attention heads.
    """
    grid_queries = True
    whole_grid = True

    def __init__(self, encoder_spec: Dict[str, Any], width: int = 256, blocks: int = 16):
        super().__init__()
        self.width = width
        self.encoder = make(encoder_spec)
        if self.encoder.out_dim != CODE_DIM:
            raise ValueError(f"sronet needs an encoder with {CODE_DIM}-channel latent codes (its "
                             f"first layer is built for {CODE_DIM}, as in the official code); "
                             f"encoder '{encoder_spec['name']}' gives {self.encoder.out_dim}")
        self.conv00 = nn.Conv2d((CODE_DIM + 2) * 4 + 2, width, 1)
        self.conv0 = GalerkinAttention(width, blocks)
        self.conv1 = GalerkinAttention(width, blocks)
        self.fc1 = nn.Conv2d(width, PROJECTION_DIM, 1)
        self.fc2 = nn.Conv2d(PROJECTION_DIM, 3, 1)

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> SRNOFeat:
        """(B, 64, h, w) latent codes and the input."""
        return SRNOFeat(codes, inp)

    def lift(self, feat: SRNOFeat, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """(B, Q, 2) queries -> (B, Q, width) lifted tokens (independent per query)."""
        h, w = feat.feat.shape[-2:]
        rel_coords, codes, areas = [], [], []
        for (q_feat,), rel_coord in members([feat.feat], coord):
            rel_coords.append(rel_coord)
            codes.append(q_feat)
            areas.append(area(rel_coord))
        tot_area = torch.stack(areas).sum(dim=0)
        # LIIF's ensemble weights (the opposite code's area) applied to the codes themselves.
        codes = [c * (a / tot_area).unsqueeze(-1) for c, a in zip(codes, areas[::-1])]
        grid = torch.cat([*rel_coords, *codes, relative_cell(cell, h, w)], dim=-1)
        return pointwise(self.conv00, grid)

    def query(self, feat: SRNOFeat, coord: torch.Tensor,
              cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, Q, 2) coords, (B, Q, 2) cells -> (B, Q, 3) normalised RGB; the attention runs
        over all Q queries (the official code passes the whole H x W grid)."""
        if cell is None:
            raise ValueError("sronet decodes with the cell size; pass cell")
        x = self.conv1(self.conv0(self.lift(feat, coord, cell)))
        return self.project(feat, x, coord)

    def project(self, feat: SRNOFeat, x: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """(B, Q, width) tokens -> (B, Q, 3) RGB, plus the bilinear skip."""
        ret = pointwise(self.fc2, F.gelu(pointwise(self.fc1, x)))
        return ret + sample_bilinear(feat.inp, coord)

    def query_stream(self, feat: SRNOFeat, chunks: Callable[[], Iterable[Tuple[
            torch.Tensor, torch.Tensor]]], impl: str = 'reference',
                     chunk_size: Optional[int] = None) -> Iterator[torch.Tensor]:
        """The whole-grid output of all the chunks' queries, one chunk at a time, in memory
        bounded by a chunk: the attention layers see the other queries only through their
        K^T V sums, so one pass over the chunks sums them for each layer, and a last pass
        decodes. Equals `query` on all the queries up to float rounding (the sums are added
        in another order). `impl` and `chunk_size` do not apply (one path, whole chunks)."""
        n, kv0 = 0, 0
        for coord, cell in chunks():
            kv0 = kv0 + self.conv0.kv_sum(self.lift(feat, coord, cell))
            n += coord.shape[1]
        kv0 = kv0 / n
        kv1 = 0
        for coord, cell in chunks():
            kv1 = kv1 + self.conv1.kv_sum(self.conv0.attend(self.lift(feat, coord, cell), kv0))
        kv1 = kv1 / n
        for coord, cell in chunks():
            x = self.conv0.attend(self.lift(feat, coord, cell), kv0)
            yield self.project(feat, self.conv1.attend(x, kv1), coord)
