"""CiaoSR: Continuous Implicit Attention-in-Attention Network (Cao et al., CVPR 2023), written
from the paper (arXiv 2212.04362) and the description and vectors of
../shared/reference/ciaosr (the official code is CC-BY-NC-4.0 and was not read). State-dict keys
and arguments are the official generator's, so released weights load as they are.

A query attends to its 4 nearest latent codes (Sec. 3.2, the implicit attention): the query's
3x3-unfolded feature Q against keys K' = K * mlp_k([K, rel, cell]) and values
V' = V * mlp_v([V, rel, cell]), V holding the unfolded feature and the non-local feature N of
a cross-scale attention over the whole image (Sec. 3.3, the "attention-in-attention"); the
softmax-weighted sum of values goes through mlp_q, plus bilinear interpolation of the input.

Inputs are normalised as CiaoSR's configs say (x - the DIV2K mean, std 1), not LIIF's
(utils.ciaosr_release.CIAOSR_NORM, which loading gives CiaoSR checkpoints).
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.ciaosr_release import CIAOSR_NORM
from .decoder import ImplicitDecoder
from .ensemble import code_coords, code_indices, sample_bilinear, sample_nearest
from .mlp import MLP
from .models import register
from .nonlocal_attention import CrossScaleAttention
from .swinir import make_swinir

# The 4 nearest codes, (row, col) offsets in units of the shift; their tie-breaking shift
# (added whatever the offset's sign) and how far inside (-1, 1) the shifted point is kept.
NEIGHBOURS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
EPS_SHIFT = 1e-6
BORDER_EPS = 1e-6


class CiaoFeat(NamedTuple):
    """What CiaoSR keeps per image.

    feat, nonlocal_feat: (B, C, h, w) the encoder's features and the non-local branch's.
    inp: (B, 3, h, w) the normalised input, for the bilinear skip.
    unfolded: the reference path's (q (B, 9C, h, w), v (B, 10C, h, w)), made on its first
        call (9.5 times the features' memory; the fast path never makes them).
    """
    feat: torch.Tensor
    nonlocal_feat: torch.Tensor
    inp: torch.Tensor
    unfolded: Dict[str, torch.Tensor]


class CiaoTables(NamedTuple):
    """Fast path: the features zero-padded by one code as rows (B*(h+2)*(w+2), C), the
    non-local ones as rows (B*h*w, C), and the grid's size."""
    feat: torch.Tensor
    nonlocal_feat: torch.Tensor
    inp: torch.Tensor
    h: int
    w: int


def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class ResidualBlockNoBN(nn.Module):
    """mmedit's EDSR block: x + conv2(relu(conv1(x)))."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = conv(c, c), conv(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.conv = conv(cin, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.relu(self.conv(x))], dim=1)


class RDB(nn.Module):
    """mmedit's residual dense block: x + lff(dense layers(x))."""

    def __init__(self, c: int, growth: int, num_layers: int):
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(c + i * growth, growth)
                                      for i in range(num_layers)])
        self.lff = conv(c + num_layers * growth, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.layers(x))


@register('ciaosr')
class CiaoSR(ImplicitDecoder):
    """Args (the official generator's; the releases' configs):
        encoder: {'type': 'EDSR' | 'RDN' | 'SwinIR', ...} in mmedit's argument names
            (EDSR: mid_channels, num_blocks; RDN: mid_channels, num_blocks, num_layers,
            channel_growth; SwinIR: its own), upsampling parts unused.
        imnet_q, imnet_k, imnet_v: {'hidden_list': [...]} (type, in_dim and out_dim are the
            configs' placeholders: the dims follow from the encoder's channels C).
        local_size: 2 (the 4 nearest codes); feat_unfold: True; non_local_attn: True;
        multi_scale: [2]; softmax_scale: the attention logits' factor (1);
        window_size: SwinIR's window (inputs reflect-padded to it, features cropped back);
        eval_bsize: queries per call of the official test (any chunking gives the same).
    """

    separable_features = False  # the non-local branch sees the whole image (or tile)
    own_data_norm = CIAOSR_NORM

    def __init__(self, encoder: Dict[str, Any], imnet_q: Dict[str, Any],
                 imnet_k: Dict[str, Any], imnet_v: Dict[str, Any], local_size: int = 2,
                 feat_unfold: bool = True, non_local_attn: bool = True,
                 multi_scale: Sequence[int] = (2,), softmax_scale: float = 1,
                 window_size: Optional[int] = None, eval_bsize: Optional[int] = None):
        super().__init__()
        if local_size != 2 or not feat_unfold or not non_local_attn or list(multi_scale) != [2]:
            raise ValueError("ciaosr: only the released setting is implemented: local_size 2, "
                             "feat_unfold true, non_local_attn true, multi_scale [2]; got "
                             f"{local_size}, {feat_unfold}, {non_local_attn}, "
                             f"{list(multi_scale)}")
        self.kind = str(encoder.get('type', '')).lower()
        if self.kind not in ('edsr', 'rdn', 'swinir'):
            raise ValueError(f"ciaosr: encoder type '{encoder.get('type')}'; expected EDSR, RDN "
                             "or SwinIR")
        self.softmax_scale = softmax_scale
        self.eval_bsize = eval_bsize
        c = encoder.get('embed_dim', 180) if self.kind == 'swinir' else \
            encoder.get('mid_channels', 64)
        self.imnet_q = MLP(10 * c, 3, imnet_q['hidden_list'])
        self.imnet_k = MLP(9 * c + 4, 9 * c, imnet_k['hidden_list'])
        self.imnet_v = MLP(10 * c + 4, 10 * c, imnet_v['hidden_list'])
        self.cs_attn = CrossScaleAttention(c)
        getattr(self, f'build_{self.kind}')(encoder)
        self.window = window_size or encoder.get('window_size', 8) if self.kind == 'swinir' \
            else 0

    # --- encoders: the official generator keeps their parts at its top level -------------
    def build_edsr(self, args: Dict[str, Any]) -> None:
        c = args.get('mid_channels', 64)
        self.conv_first = conv(args.get('in_channels', 3), c)
        self.body = nn.Sequential(*[ResidualBlockNoBN(c) for _ in range(args.get('num_blocks',
                                                                                   16))])
        self.conv_after_body = conv(c, c)

    def build_rdn(self, args: Dict[str, Any]) -> None:
        c, n = args.get('mid_channels', 64), args.get('num_blocks', 16)
        self.sfe1, self.sfe2 = conv(args.get('in_channels', 3), c), conv(c, c)
        self.rdbs = nn.ModuleList(RDB(c, args.get('channel_growth', 64),
                                      args.get('num_layers', 8)) for _ in range(n))
        self.gff = nn.Sequential(conv(n * c, c, 1), conv(c, c))

    def build_swinir(self, args: Dict[str, Any]) -> None:
        known = ('img_size', 'in_chans', 'embed_dim', 'depths', 'num_heads', 'window_size',
                 'mlp_ratio', 'qkv_bias', 'qk_scale', 'drop_rate', 'attn_drop_rate',
                 'drop_path_rate', 'ape', 'patch_norm', 'use_checkpoint', 'resi_connection')
        swin = make_swinir(**{k: v for k, v in args.items() if k in known})
        self.conv_first, self.patch_embed = swin.conv_first, swin.patch_embed
        self.layers, self.norm = swin.layers, swin.norm
        self.conv_after_body = swin.conv_after_body

    def features(self, inp: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised input -> (B, C, h, w) encoder features."""
        if self.kind == 'edsr':
            x = self.conv_first(inp)
            return self.conv_after_body(self.body(x)) + x
        if self.kind == 'rdn':
            f1 = self.sfe1(inp)
            x, outs = self.sfe2(f1), []
            for block in self.rdbs:
                x = block(x)
                outs.append(x)
            return self.gff(torch.cat(outs, dim=1)) + f1
        h, w = inp.shape[-2:]
        ws = self.window
        x = F.pad(inp, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws), 'reflect')
        x = self.conv_first(x)
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, tuple(x.shape[-2:]))
        body = self.norm(tokens).transpose(1, 2).reshape(x.shape)
        return (self.conv_after_body(body) + x)[..., :h, :w]

    @property
    def encoder_window(self) -> int:
        return 0  # the features are cropped back: no window protocol needed

    def encode(self, inp: torch.Tensor) -> CiaoFeat:
        feat = self.features(inp)
        return CiaoFeat(feat, self.cs_attn(feat), inp, {})

    def neighbour_points(self, coord: torch.Tensor, cell: torch.Tensor, h: int, w: int
                         ) -> torch.Tensor:
        """(B, 4, Q, 2): the points whose nearest codes are a query's 4 neighbours. The shift
        is (1 - cell) / (side - 1), from each image's first cell (not LIIF's 1 / side), plus
        EPS_SHIFT whatever the direction, kept inside (-1, 1)."""
        shift = (1 - cell[:, :1]) / (coord.new_tensor([h, w]) - 1)     # (B, 1, 2)
        steps = torch.stack([shift * coord.new_tensor([vy, vx]) + EPS_SHIFT
                             for vy, vx in NEIGHBOURS], dim=1)            # (B, 4, 1, 2)
        return (coord.unsqueeze(1) + steps).clamp(-1 + BORDER_EPS, 1 - BORDER_EPS)

    def attend(self, q: torch.Tensor, ks: List[torch.Tensor], vs: List[torch.Tensor],
               rels: List[torch.Tensor], rel_cell: torch.Tensor, inp: torch.Tensor,
               coord: torch.Tensor) -> torch.Tensor:
        """The implicit attention of (..., 9C) queries over their 4 neighbours' keys (..., 9C),
        values (..., 10C) and relative positions (..., 2) -> (..., 3) normalised RGB."""
        logits, values = [], []
        for k, v, rel in zip(ks, vs, rels):
            k = k * self.imnet_k(torch.cat([k, rel, rel_cell], dim=-1))
            values.append(v * self.imnet_v(torch.cat([v, rel, rel_cell], dim=-1)))
            logits.append((q * k).sum(dim=-1) * self.softmax_scale)
        weights = torch.softmax(torch.stack(logits, dim=-1), dim=-1)    # (..., 4)
        mixed = sum(weights[..., n:n + 1] * values[n] for n in range(len(values)))
        return self.imnet_q(mixed) + sample_bilinear(inp, coord)

    def query(self, feat: CiaoFeat, coord: torch.Tensor, cell: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
        """Reference path (grid_sample on the unfolded maps, as the paper's code describes
        it): (B, Q, 2) coords and cells -> (B, Q, 3) normalised RGB."""
        if cell is None:
            raise ValueError("ciaosr decodes with the cell size; pass cell")
        B, C, h, w = feat.feat.shape
        if not feat.unfolded:
            q_map = F.unfold(feat.feat, 3, padding=1).view(B, 9 * C, h, w)
            feat.unfolded.update(q=q_map, v=torch.cat([q_map, feat.nonlocal_feat], dim=1))
        q_map, v_map = feat.unfolded['q'], feat.unfolded['v']
        size = coord.new_tensor([h, w])
        centres = code_coords(feat.feat)
        points = self.neighbour_points(coord, cell, h, w).unbind(1)
        return self.attend(sample_nearest(q_map, coord),
                           [sample_nearest(q_map, p) for p in points],
                           [sample_nearest(v_map, p) for p in points],
                           [(coord - sample_nearest(centres, p)) * size for p in points],
                           cell * size, feat.inp, coord)

    # Fast path: the 3x3 neighbourhoods are gathered from the features (one row per code),
    # never unfolded into 9C-channel maps; the nearest codes are found once per point.

    @property
    def supports_fast(self) -> bool:
        return True

    def fast_decoder(self, feat: CiaoFeat, rows=None):
        B, C, h, w = feat.feat.shape
        padded = F.pad(feat.feat, (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(-1, C)
        local = feat.nonlocal_feat.permute(0, 2, 3, 1).reshape(-1, C)
        tables = CiaoTables(padded.contiguous(), local.contiguous(), feat.inp, h, w)
        return lambda coord, cell: self.query_tables(tables, coord, cell)

    def query_tables(self, t: CiaoTables, coord: torch.Tensor, cell: Optional[torch.Tensor]
                     ) -> torch.Tensor:
        """Fast-path query: as `query`, from `fast_decoder`'s tables."""
        if cell is None:
            raise ValueError("ciaosr decodes with the cell size; pass cell")
        B, Q = coord.shape[:2]
        h, w, C = t.h, t.w, t.feat.shape[1]
        points = torch.cat([coord.unsqueeze(1), self.neighbour_points(coord, cell, h, w)], 1)
        row, col = code_indices(h, w, points.view(B, 5 * Q, 2))
        row, col = row.view(B, 5, Q), col.view(B, 5, Q)
        centres = torch.stack([(-1 + 1 / h) + (2 / h) * row, (-1 + 1 / w) + (2 / w) * col], -1)
        row, col = row.long(), col.long()
        batch = torch.arange(B, device=coord.device).view(B, 1, 1)
        # The 3x3 neighbourhood of each code in the padded table, channel-major as unfold.
        base = (batch * (h + 2) + row) * (w + 2) + col                   # top-left of 3x3
        offsets = torch.tensor([di * (w + 2) + dj for di in range(3) for dj in range(3)],
                               device=coord.device)
        unfolded = t.feat.index_select(0, (base.unsqueeze(-1) + offsets).view(-1))
        unfolded = unfolded.view(B, 5, Q, 9, C).transpose(-1, -2).reshape(B, 5, Q, 9 * C)
        local = t.nonlocal_feat.index_select(0, ((batch * h + row) * w + col).view(-1))
        local = local.view(B, 5, Q, C)
        size = coord.new_tensor([h, w])
        rels = (coord.unsqueeze(1) - centres[:, 1:]) * size
        vs = torch.cat([unfolded[:, 1:], local[:, 1:]], dim=-1)
        return self.attend(unfolded[:, 0], list(unfolded[:, 1:].unbind(1)), list(vs.unbind(1)),
                           list(rels.unbind(1)), cell * size, t.inp, coord)


def official_class(kind: str) -> type:
    """The official generator class of one encoder (CiaoSR's checkpoints and configs name
    these): CiaoSR, checking the encoder's type."""
    def __init__(self, encoder: Dict[str, Any], **args):
        if str(encoder.get('type', '')).lower() != kind:
            raise ValueError(f"{type(self).__name__} takes a {kind} encoder, got type "
                             f"'{encoder.get('type')}'")
        CiaoSR.__init__(self, encoder, **args)
    name = f'LocalImplicitSR{kind.upper()}'
    return register(name)(type(name, (CiaoSR,), {'__init__': __init__, '__doc__': __init__.__doc__}))


for _kind in ('edsr', 'rdn', 'swinir'):
    official_class(_kind)
