"""CMSR, Controllable Multi-Scale Rendering (LMF, He & Jin, CVPR 2024, Sec. 3.4).

Beyond the training scales, most of an upscaled image is smooth: LMF decodes each region only
at the lowest scale that renders it to a given accuracy, and upsamples bilinearly from there.
A code's need for detail is measured by the mean absolute value of its shift modulations
(`mod_mean`); a scale-to-mean table, made per target scale by the table maker
(scripts/make_cmsr_table.py, the official init_cmsr.py), says up to which mean each decode
scale suffices:

    {target scale: {decode scale s_1: t_1, s_2: t_2, ...}}   thresholds t non-decreasing

Rendering at scale S with the first table whose target is >= S (else the last): levels s_1 <
s_2 < ... < S (S added with threshold 1 unless the last t reaches 1); level i decodes the
pixels of its (h s_i, w s_i) grid whose code mean lies in [t_{i-1}, t_i] (the first level:
below t_1, the last: above its lower threshold), with cells 2/(h s_i) times max(s_i / 4, 1).
From the input image, each level's image is the previous one upsampled bilinearly with the
level's decoded pixels written over it; the last is resampled to the queries.

The level grids are the latent-code centres bilinearly interpolated, as in the official code
(at the border they stay at the outermost code centres).
"""
import math
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

from .ensemble import code_coords, sample_bilinear, sample_nearest

CMSR_MAX_SCALE = 4   # the training scales end here: CMSR only beyond (as the official code)
Tables = Dict[float, Dict[float, float]]


def check_tables(tables, what: str) -> None:
    """ValueError unless `tables` is {target scale: {decode scale: threshold}}, numbers > 0
    (decode scales >= 1, thresholds >= 0 and not decreasing with the decode scale),
    non-empty."""
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{what}: expected a mapping {{target scale: {{decode scale: "
                         f"threshold}}}}, got {tables!r}")
    for scale, table in tables.items():
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or \
                not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"{what}: target scale {scale!r} is not a positive number")
        if not isinstance(table, dict) or not table:
            raise ValueError(f"{what}: the table of scale {scale} must be a non-empty mapping "
                             f"{{decode scale: threshold}}, got {table!r}")
        for s, t in table.items():
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                     math.isfinite(v) for v in (s, t))
            if not ok or s <= 0 or t < 0:
                raise ValueError(f"{what}: entry {s!r}: {t!r} of scale {scale} must be a "
                                 "positive decode scale and a threshold >= 0")
            if s < 1:
                raise ValueError(f"{what}: decode scale {s} of scale {scale} is below 1 (the "
                                 "input's own resolution is the lowest a code is decoded at)")
        thresholds = [table[s] for s in sorted(table)]
        if any(b < a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"{what}: the thresholds of scale {scale} decrease as the decode "
                             f"scale grows ({dict(sorted(table.items()))}); a table made by "
                             "make_cmsr_table.py never does (a higher decode scale passes every "
                             "code a lower one passes)")


def levels(tables: Tables, scale: float) -> Tuple[List[float], List[float]]:
    """(decode scales, thresholds with a leading 0) for target `scale`, as described above."""
    keys = sorted(tables)
    chosen = next((k for k in keys if k >= scale), keys[-1])
    decode_scales, thresholds = [], [0.0]
    for s in sorted(tables[chosen]):
        if s >= scale:
            break
        decode_scales.append(s)
        thresholds.append(tables[chosen][s])
    if thresholds[-1] < 1:
        decode_scales.append(scale)
        thresholds.append(1.0)
    return decode_scales, thresholds


def level_grid(codes: torch.Tensor, qh: int, qw: int) -> torch.Tensor:
    """(B, qh*qw, 2) coordinates of a level: the code centres of (B, C, h, w) `codes`
    interpolated bilinearly to (qh, qw)."""
    B = codes.shape[0]
    grid = F.interpolate(code_coords(codes), size=(qh, qw), mode='bilinear',
                         align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(B, qh * qw, 2)


def level_mask(mod_mean: torch.Tensor, q_coord: torch.Tensor, i: int, first: int,
               last: int, thresholds: List[float]) -> torch.Tensor:
    """(qh*qw,) bool: the pixels of level i to decode, from each pixel's code mean."""
    if i == last:
        return sample_nearest(mod_mean, q_coord).flatten() >= thresholds[i]
    if i == first:
        return sample_nearest(mod_mean, q_coord).flatten() <= thresholds[i + 1]
    lo, hi = thresholds[i], thresholds[i + 1]
    mid, radius = (hi + lo) / 2, (hi - lo) / 2
    return sample_nearest((mod_mean - mid).abs(), q_coord).flatten() <= radius


def cmsr_decode(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                mod_mean: torch.Tensor, inp: torch.Tensor, coord: torch.Tensor,
                tables: Tables) -> torch.Tensor:
    """CMSR rendering of the queries `coord` (B, Q, 2): the whole output grid, row-major.

    Args:
        decode: (1, q, 2) coords, (1, q, 2) cells -> (1, q, 3), the model's decoding with its
            modulations fixed (made for the cell of the queries).
        mod_mean: (B, 1, h, w) each code's mean absolute shift modulation.
        inp: (B, 3, h, w) normalised input, the coarsest level.

    Returns:
        (B, Q, 3). Images of a batch are rendered one at a time.
    """
    if coord.shape[0] > 1:
        return torch.cat([cmsr_decode(decode, mod_mean[b:b + 1], inp[b:b + 1],
                                      coord[b:b + 1], tables) for b in range(coord.shape[0])])
    Q = coord.shape[1]
    h, w = mod_mean.shape[-2:]
    scale = math.sqrt(Q / (h * w))
    decode_scales, thresholds = levels(tables, scale)
    active = [i for i, s in enumerate(decode_scales) if s >= 1]  # lower scales are skipped
    if not active:
        return sample_bilinear(inp, coord)
    first, last = active[0], len(decode_scales) - 1
    grids, masks, coords, cells = [], [], [], []
    for i in active:
        qh, qw = int(h * decode_scales[i]), int(w * decode_scales[i])
        q_coord = level_grid(mod_mean, qh, qw)
        mask = level_mask(mod_mean, q_coord, i, first, last, thresholds)
        grids.append((qh, qw, q_coord))
        masks.append(mask.nonzero().flatten())
        factor = max(decode_scales[i] / CMSR_MAX_SCALE, 1)
        picked = q_coord[:, masks[-1]]
        coords.append(picked)
        cells.append((picked.new_tensor([2 / qh, 2 / qw]) * factor).expand_as(picked))
    pred = decode(torch.cat(coords, dim=1), torch.cat(cells, dim=1))

    image, flat, start = inp, None, 0
    for (qh, qw, q_coord), index in zip(grids, masks):
        if index.numel() == 0:
            continue
        flat = sample_bilinear(image, q_coord)[0].contiguous()             # (qh*qw, 3)
        flat[index] = pred[0, start:start + index.numel()].to(flat.dtype)
        start += index.numel()
        image = flat.view(1, qh, qw, -1).permute(0, 3, 1, 2)
        final = (qh, qw)
    if flat is not None and decode_scales[-1] >= scale and final[0] * final[1] == Q:
        return flat.view(1, Q, -1)
    return sample_bilinear(image, coord)
