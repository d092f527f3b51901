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
from functools import partial
from typing import Callable, Dict, Iterator, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F

from utils.coords import band_coords, grid_of, make_coord
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
    interpolated bilinearly to (qh, qw), as the official code makes them."""
    B = codes.shape[0]
    grid = F.interpolate(code_coords(codes), size=(qh, qw), mode='bilinear',
                         align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(B, qh * qw, 2)


def level_axes(h: int, w: int, qh: int, qw: int, device: torch.device
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(qh,) row and (qw,) column coordinates whose product (`grid_of`) is the level grid,
    made one axis at a time: no (qh, qw) grid is built. Equal to `level_grid` within 1 ulp
    (its 2D interpolation rounds each axis with the other's weights)."""
    def axis(n: int, q: int) -> torch.Tensor:
        centres = make_coord((n,), device=device).view(1, 1, n)
        return F.interpolate(centres, size=q, mode='linear', align_corners=False).view(q)
    return axis(h, qh), axis(w, qw)


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


class Level(NamedTuple):
    """One CMSR level: its (qh, qw) grid, the pixels it decodes (`select`: (1, q, 2) coords
    -> (q,) bool) and the cell it decodes them with, (2,)."""
    qh: int
    qw: int
    select: Callable[[torch.Tensor], torch.Tensor]
    cell: torch.Tensor


def plan_levels(mod_mean: torch.Tensor, scale: float, tables: Tables) -> List[Level]:
    """The levels of `scale` (mod_mean (1, 1, h, w)), coarsest first."""
    h, w = mod_mean.shape[-2:]
    decode_scales, thresholds = levels(tables, scale)
    active = [i for i, s in enumerate(decode_scales) if s >= 1]  # lower scales are skipped
    out = []
    for i in active:
        qh, qw = int(h * decode_scales[i]), int(w * decode_scales[i])
        factor = max(decode_scales[i] / CMSR_MAX_SCALE, 1)
        out.append(Level(qh, qw, partial(level_mask, mod_mean, i=i, first=active[0],
                                         last=len(decode_scales) - 1, thresholds=thresholds),
                         mod_mean.new_tensor([2 / qh, 2 / qw]) * factor))
    return out


def render_level(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 image: torch.Tensor, coord: torch.Tensor, level: Level) -> torch.Tensor:
    """(q, C) pixels of `level` at `coord` (1, q, 2): `image` (1, C, h', w'), the level
    below, sampled bilinearly, with the pixels the level selects decoded."""
    flat = sample_bilinear(image, coord)[0].contiguous()
    index = level.select(coord).nonzero().flatten()
    if index.numel():
        picked = coord[:, index]
        flat[index] = decode(picked, level.cell.expand_as(picked))[0].to(flat.dtype)
    return flat


def whole_levels(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 mod_mean: torch.Tensor, image: torch.Tensor, levels_: List[Level]
                 ) -> Tuple[torch.Tensor, bool]:
    """The image of `levels_` rendered whole from `image` (the input), each level from the
    last one that decoded a pixel (a level that decodes none is skipped, not even
    upsampled); and whether the last of them was rendered."""
    rendered = False
    for level in levels_:
        coord = level_grid(mod_mean, level.qh, level.qw)
        rendered = bool(level.select(coord).any())
        if rendered:
            flat = render_level(decode, image, coord, level)
            image = flat.view(1, level.qh, level.qw, -1).permute(0, 3, 1, 2)
    return image, rendered


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
    levels_ = plan_levels(mod_mean, math.sqrt(Q / (h * w)), tables)
    image, rendered = whole_levels(decode, mod_mean, inp, levels_)
    if rendered and levels_[-1].qh * levels_[-1].qw == Q:
        return image.permute(0, 2, 3, 1).reshape(1, Q, -1)
    return sample_bilinear(image, coord)


def cmsr_bands(decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               mod_mean: torch.Tensor, inp: torch.Tensor, size: Tuple[int, int], rows: int,
               tables: Tables) -> Iterator[torch.Tensor]:
    """`cmsr_decode` of the (H, W) output grid `size` (one image), in bands of `rows` rows:
    the levels below the last whole (their scales are the table's, below the target), the
    last, the size of the output, a band at a time. Yields (1, rows * W, 3) per band.

    Equal to cmsr_decode within 1e-5 (tests/test_lmf.py): the last level's coordinates are
    made one axis at a time (`level_axes`), within an ulp of level_grid's."""
    H, W = size
    h, w = mod_mean.shape[-2:]
    *lower, last = plan_levels(mod_mean, math.sqrt(H * W / (h * w)), tables)
    image, _ = whole_levels(decode, mod_mean, inp, lower)
    rows_, cols = level_axes(h, w, last.qh, last.qw, inp.device)
    if not last.select(grid_of(reached(rows_, h), reached(cols, w))).any():
        yield from sampled_bands(ImageRows(image), size, rows)  # the last level is skipped
    elif (last.qh, last.qw) == (H, W):
        for r0 in range(0, H, rows):
            yield render_level(decode, image, grid_of(rows_[r0:r0 + rows], cols), last)[None]
    else:  # a level a little off the output grid: its rows as the bands' resampling needs
        yield from sampled_bands(LevelRows(decode, image, rows_, cols, last), size, rows)


def reached(axis: torch.Tensor, n: int) -> torch.Tensor:
    """One coordinate of `axis` (ascending) per code row (or column: the same arithmetic) of
    n that nearest sampling reaches from it: the level's pixels reach the codes of the grid
    of these rows and columns, and only those."""
    codes = torch.arange(n, dtype=axis.dtype, device=axis.device).view(1, 1, n, 1)
    index = sample_nearest(codes, torch.stack((axis, torch.zeros_like(axis)), -1)[None]).view(-1)
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    return axis[first]


class ImageRows:
    """The rows of an image held whole, (1, C, n, w)."""

    def __init__(self, image: torch.Tensor):
        self.image, self.n = image, image.shape[-2]

    def get(self, a: int, b: int) -> torch.Tensor:
        return self.image[:, :, a:b]


class LevelRows:
    """The rows of a level made when asked for, in ascending order (`render_level` of a few
    rows); the last ones kept, so that overlapping requests decode nothing twice."""

    def __init__(self, decode, image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 level: Level):
        self.decode, self.image, self.rows, self.cols, self.level = decode, image, rows, cols, level
        self.n = len(rows)
        self.kept = (0, 0, None)

    def get(self, a: int, b: int) -> torch.Tensor:
        """(1, C, b - a, qw): rows [a, b)."""
        k0, k1, kept = self.kept
        start, made = a, []
        if kept is not None and k0 <= a < k1:
            start = min(b, k1)
            made.append(kept[:, :, a - k0:start - k0])
        if b > start:
            flat = render_level(self.decode, self.image, grid_of(self.rows[start:b], self.cols),
                                self.level)
            made.append(flat.view(1, b - start, len(self.cols), -1).permute(0, 3, 1, 2))
        image = torch.cat(made, dim=2) if len(made) > 1 else made[0]
        self.kept = (a, b, image)
        return image


def sampled_bands(source, size: Tuple[int, int], rows: int) -> Iterator[torch.Tensor]:
    """The (H, W) output grid sampled bilinearly (border-padded) from the image `source`
    gives rows of (ImageRows or LevelRows), in bands of `rows` rows: only the rows each band
    reads are asked for. Yields (1, rows * W, C)."""
    H, W = size
    n = source.n
    for r0 in range(0, H, rows):
        coord = band_coords(H, W, r0, min(H, r0 + rows), source.image.device)
        y0, y1 = float(coord[0, 0, 0]), float(coord[0, -1, 0])
        lo, hi = ((y0 + 1) * n - 1) / 2, ((y1 + 1) * n - 1) / 2
        a = min(max(0, math.floor(lo) - 1), n - 1)   # a row of margin for float32 rounding
        b = max(min(n, math.floor(hi) + 3), a + 1)
        if (a, b) != (0, n):  # the rows [a, b) as an image of their own: move the coordinates
            coord = torch.stack((((coord[..., 0] + 1) * n - 2 * a) / (b - a) - 1,
                                 coord[..., 1]), dim=-1)
        yield sample_bilinear(source.get(a, b), coord)
