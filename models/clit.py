"""CLIT: Cascaded Local Implicit Transformer (Chen et al., CVPR 2023), official layout of
jaroslaw1007/CLIT. LIT is `clit` with one stage (imnet_num = conv_num = 1), as the official
configs say.

A query attends to the 7x7 latent codes around its nearest one (local attention with a
sinusoidal positional bias); the 49 attention-weighted values, concatenated with the cell, go
through an MLP. Beyond x4 the scale is split into a cascade (x12 -> [4, 3]): stage k > 0 works on
the features resampled to the size of the level before it, every stage is queried at the final
coordinates, and the stages' outputs accumulate (acc_k = mlp_k(...) + 0.75 acc_{k-1}); the last
one plus bilinear interpolation of the input is the prediction.

On our interface the cascade comes from the cell: the output size is 2 / cell (the first query's
cell of each image, as the official test passes one cell per image), the scale its ratio to the
input, split as the official test wrappers split it (cascade_scales). A model with fewer stages
than that list has runs its last stage on the rest of the scale (the official test.py crashes).
"""
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from utils.cascade import cascade_scales, level_sizes
from utils.coords import make_coord

from .decoder import ImplicitDecoder
from .ensemble import code_coords, sample_bilinear
from .models import make, register

# Each stage's output is added to 0.75 times the accumulated output of the stages before it.
CARRY = 0.75
# A scale read from a cell within this of an integer is that integer (2 / cell in float32
# is not exact), so that x16 is [4, 4], not [4, 4, 1.0000001].
SCALE_SNAP = 1e-4


class CLITFeat(NamedTuple):
    """What CLIT keeps per image.

    feat: (B, base_dim, h, w) conv_ch of the encoder's codes (the official init_feat).
    inp: (B, 3, h, w) the normalised input, for the bilinear skip.
    stages: per-image cache, level sizes -> each stage's (q, k, v) maps; filled on first use,
        so that the chunks of one image's queries compute them once.
    """
    feat: torch.Tensor
    inp: torch.Tensor
    stages: Dict[Tuple[Tuple[int, int], ...], List[Tuple[torch.Tensor, ...]]]


@register('clit')
class CLIT(ImplicitDecoder):
    """Args (official names):
        encoder_spec: the encoder (edsr-baseline, rdn, swinir; no upsampling).
        imnet_spec: each stage's MLP (its in_dim is set to 49 base_dim + 2).
        pb_spec: the positional bias (`posenc`), or None for none.
        base_dim: channels of the attention features; head: attention heads.
        r: the window is (2r + 1)^2 codes around the nearest one.
        imnet_num, conv_num: cascade stages (both equal in every official config).
        is_cell: append the cell (relative to the stage's map) to the MLP input.
        local_attn: attention (True in every official config; False keeps only the values).
    """
    code_reach = 7  # window r = 3, conv_ch, the stage convs, bilinear Q and a spare

    def __init__(self, encoder_spec: Dict[str, Any], imnet_spec: Dict[str, Any],
                 pb_spec: Optional[Dict[str, Any]] = None, base_dim: int = 192, head: int = 8,
                 r: int = 3, imnet_num: int = 1, conv_num: int = 1, is_cell: bool = True,
                 local_attn: bool = True, verbose: bool = False):
        super().__init__()
        if imnet_num != conv_num or imnet_num < 1:
            raise ValueError(f"clit: imnet_num ({imnet_num}) and conv_num ({conv_num}) are the "
                             "number of cascade stages: equal and >= 1")
        if base_dim % head:
            raise ValueError(f"clit: base_dim {base_dim} is not divisible by head {head}")
        self.dim, self.head, self.is_cell, self.local_attn = base_dim, head, is_cell, local_attn
        self.r = r if local_attn else 0
        self.encoder = make(encoder_spec)
        self.conv_ch = nn.Conv2d(self.encoder.out_dim, base_dim, 3, padding=1)

        def convs() -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(base_dim, base_dim, 3, padding=1)
                                 for _ in range(conv_num))
        self.conv_vs = convs()
        if local_attn:
            self.conv_qs, self.conv_ks = convs(), convs()
            self.pb_encoder = make(pb_spec, args={'head': head}) if pb_spec else None
        in_dim = base_dim * (2 * self.r + 1) ** 2 + (2 if is_cell else 0)
        self.imnets = nn.ModuleList(make(imnet_spec, args={'in_dim': in_dim})
                                    for _ in range(imnet_num))

    @property
    def stages(self) -> int:
        return len(self.imnets)

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor) -> CLITFeat:
        return CLITFeat(self.conv_ch(codes), inp, {})

    def levels_of(self, feat: CLITFeat, cell: torch.Tensor) -> Tuple[Tuple[int, int], ...]:
        """The sizes of the levels before the last (one per stage after the first) for
        queries whose (B, Q, 2) cells give the output size; at most stages - 1 of them."""
        h, w = feat.feat.shape[-2:]
        scale = 2 / (float(cell[0, 0, 0]) * h)
        if abs(scale - round(scale)) < SCALE_SNAP:
            scale = float(round(scale))
        scales = cascade_scales(scale)
        return tuple(level_sizes(h, w, scales)[:min(len(scales), self.stages) - 1])

    def stage_maps(self, feat: CLITFeat, levels: Tuple[Tuple[int, int], ...]
                   ) -> List[Tuple[torch.Tensor, ...]]:
        """Each stage's (map, q, k, v) (B, base_dim, h_k, w_k): stage 0 on the features,
        stage k on them resampled (bilinear, zero padding) to the size of level k - 1."""
        if levels in feat.stages:
            return feat.stages[levels]
        maps = [feat.feat]
        for size in levels:
            grid = make_coord(size, device=feat.feat.device).flip(-1)
            grid = grid.unsqueeze(0).unsqueeze(2).expand(feat.feat.shape[0], -1, -1, -1)
            maps.append(F.grid_sample(feat.feat, grid.to(feat.feat.dtype), mode='bilinear',
                                      align_corners=False).view(*feat.feat.shape[:2], *size))
        out = []
        for k, m in enumerate(maps):
            qk = (self.conv_qs[k](m), self.conv_ks[k](m)) if self.local_attn else (None, None)
            out.append((m, *qk, self.conv_vs[k](m)))
        feat.stages.clear()  # one cache entry: one output size per image at a time
        feat.stages[levels] = out
        return out

    def query(self, feat: CLITFeat, coord: torch.Tensor, cell: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
        """Reference path: (B, Q, 2) coords and cells -> (B, Q, 3) normalised RGB (the last
        stage's prediction)."""
        if cell is None:
            raise ValueError("clit decodes with the cell size; pass cell")
        levels = self.levels_of(feat, cell)
        return self.cascade(feat, self.stage_maps(feat, levels), coord, cell[:, 0])[-1]

    def cascade(self, feat: CLITFeat, maps: List[Tuple[torch.Tensor, ...]],
                coord: torch.Tensor, cell: torch.Tensor) -> List[torch.Tensor]:
        """Every stage's prediction (B, Q, 3) at coord (B, Q, 2), for the (B, 2) cell of each
        image (the final level's)."""
        preds, acc = [], None
        skip = sample_bilinear(feat.inp, coord)
        for k, (m, q, key, v) in enumerate(maps):
            out = self.imnets[k](self.attend(m, q, key, v, coord, cell))
            acc = out if acc is None else out + acc * CARRY
            preds.append(acc + skip)
        return preds

    def attend(self, m: torch.Tensor, q: Optional[torch.Tensor], key: Optional[torch.Tensor],
               v: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """The MLP input of each query, (B, Q, 49 base_dim + 2), from one stage's maps, as the
        official query_rgb computes it (grid_sample for every lookup). There is no faster
        path: measured at the official sizes, the lookups are a third of the time and an index
        gather is no faster; the rest is building the 49 x 256 weighted values per query."""
        B, Q = coord.shape[:2]
        h, w = m.shape[-2:]
        d, heads, area = self.dim, self.head, (2 * self.r + 1) ** 2
        point = coord.unsqueeze(2)                                          # (B, Q, 1, 2)
        steps = torch.linspace(-self.r, self.r, 2 * self.r + 1, device=m.device)
        delta = torch.stack(torch.meshgrid(steps * (2 / h), steps * (2 / w), indexing='ij'),
                            dim=-1).view(1, 1, -1, 2).to(coord.dtype)
        # The centre of the nearest code, then the window around it.
        centre = F.grid_sample(code_coords(m), point.flip(-1), mode='nearest',
                               align_corners=False).permute(0, 2, 3, 1) + delta

        def sample_window(x: torch.Tensor) -> torch.Tensor:
            return F.grid_sample(x, centre.flip(-1), mode='nearest',
                                 align_corners=False).permute(0, 2, 3, 1)
        values = sample_window(v)                                           # (B, Q, 49, d)
        rel = point - centre
        rel = torch.stack([rel[..., 0] * h, rel[..., 1] * w], dim=-1)
        if self.local_attn:
            q_s = F.grid_sample(q, point.flip(-1), mode='bilinear', align_corners=False)
            q_s = q_s.permute(0, 2, 3, 1).reshape(B, Q, 1, heads, d // heads).transpose(2, 3)
            k_s = sample_window(key).reshape(B, Q, area, heads, d // heads)
            k_s = k_s.permute(0, 1, 3, 4, 2)                               # (B, Q, H, dh, 49)
            logits = torch.matmul(q_s, k_s).reshape(B, Q, heads, area).permute(0, 1, 3, 2)
            logits = logits / math.sqrt(d // heads)
            if self.pb_encoder is not None:
                logits = logits + self.pb_encoder(rel)[1]
            attn = F.softmax(logits, dim=-2).reshape(B, Q, area, heads, 1)
            values = (values.reshape(B, Q, area, heads, d // heads) * attn)
        values = values.reshape(B, Q, -1)
        if not self.is_cell:
            return values
        rel_cell = torch.stack([cell[:, 0] * h, cell[:, 1] * w], dim=-1)
        return torch.cat([values, rel_cell.unsqueeze(1).expand(B, Q, 2)], dim=-1)

    def forward(self, inp: torch.Tensor, coord, cell: Optional[torch.Tensor] = None,
                *args, impl: str = 'reference', levels: Optional[torch.Tensor] = None):
        """Our signature (B, 3, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3), the levels from the
        cell or, for training batches of per-stage scales, given ((K, 2) sizes of the levels
        before the last); or the official training call model(inp, coords, sample_coord,
        cell) with the list of level grids (B, H_k, W_k, 2), (B, q, 2) queries and a (B, 2)
        cell -> every stage's (B, q, 3)."""
        if levels is not None:
            sizes = tuple(tuple(int(v) for v in size) for size in levels.tolist())
            if len(sizes) >= self.stages:
                raise ValueError(f"clit: {len(sizes) + 1} levels for {self.stages} stages")
            feat = self.encode(inp)
            return self.cascade(feat, self.stage_maps(feat, sizes), coord, cell[:, 0])[-1]
        if not isinstance(coord, (list, tuple)):
            return super().forward(inp, coord, cell, impl)
        sample_coord, cell = cell, args[0]
        feat = self.encode(inp)
        levels = tuple(tuple(c.shape[1:3]) for c in coord[:-1])
        if len(levels) >= self.stages:
            raise ValueError(f"clit: {len(coord)} levels for a model of {self.stages} stages")
        return self.cascade(feat, self.stage_maps(feat, levels), sample_coord, cell)

    def chop_forward(self, inp: torch.Tensor, coords: Sequence[torch.Tensor],
                     cell: torch.Tensor, eval_bsize: int = 100000) -> torch.Tensor:
        """The official test call: the last stage at every point of the final grid
        coords[-1] (B, H, W, 2) -> (B, H*W, 3), queries in chunks of eval_bsize."""
        feat = self.encode(inp)
        levels = tuple(tuple(c.shape[1:3]) for c in coords[:-1])
        maps = self.stage_maps(feat, levels)
        flat = coords[-1].reshape(coords[-1].shape[0], -1, 2)
        return torch.cat([self.cascade(feat, maps, flat[:, i:i + eval_bsize], cell)[-1]
                          for i in range(0, flat.shape[1], eval_bsize)], dim=1)
