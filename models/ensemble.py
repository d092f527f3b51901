"""Local ensemble (LIIF Sec. 3.2), shared by LIIF, LTE, lte-fast and SRNO.

A query at continuous coordinate x is decoded from each of its 4 nearest latent codes z_t, with
x - v_t (the query relative to code t's centre), and the 4 predictions are blended with weights
S_t / S, S_t being the area of the rectangle between x and the code diagonally opposite to t
(Eq. 4). Without the ensemble, only the single nearest code is used.

Reference helpers below follow the official code (grid_sample for every lookup); `Lookup` and
`nearest_codes` serve the fast paths, which find each query's codes once and gather rows.
"""
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from utils.coords import make_coord

# Sec. 3.3 local ensemble: a tiny shift breaks ties when a query sits exactly on the boundary
# between two latent codes, and coordinates are kept strictly inside (-1, 1).
EPS_SHIFT = 1e-6
BORDER_EPS = 1e-6
# Keeps ensemble weights positive when a query falls exactly on a latent code.
AREA_EPS = 1e-9
# Offsets, in half latent cells, of the 4 codes around a query: the official (vx, vy) order.
ENSEMBLE_SHIFTS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


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


def sample_bilinear(image: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of an image at the queries, border-padded: the skip connection
    that LTE and SRNO add to their output. (B, C, h, w), (B, Q, 2) -> (B, Q, C)."""
    return F.grid_sample(image, coord.flip(-1).unsqueeze(1), mode='bilinear',
                         padding_mode='border', align_corners=False)[:, :, 0, :].permute(0, 2, 1)


def code_coords(feat: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) centres of the latent codes of `feat` (B, C, h, w), (row, col)."""
    B, _, h, w = feat.shape
    coord = make_coord((h, w), flatten=False, device=feat.device, dtype=feat.dtype)
    return coord.permute(2, 0, 1).unsqueeze(0).expand(B, 2, h, w)


def shifts(local_ensemble: bool) -> Tuple[Tuple[Tuple[int, int], ...], float]:
    """The (vx, vy) offsets of the codes blended for each query, and the tie-breaking shift."""
    return (ENSEMBLE_SHIFTS, EPS_SHIFT) if local_ensemble else (((0, 0),), 0.0)


def shifted(coord: torch.Tensor, vx: int, vy: int, h: int, w: int,
            eps_shift: float) -> torch.Tensor:
    """Query moved by (vx, vy) half latent cells (+ tie shift), kept inside (-1, 1)."""
    coord_ = coord.clone()
    coord_[..., 0] += vx / h + eps_shift
    coord_[..., 1] += vy / w + eps_shift
    return coord_.clamp_(-1 + BORDER_EPS, 1 - BORDER_EPS)


def relative(coord: torch.Tensor, code_coord: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Eq. 3: the query relative to its code's centre, in latent-cell units, (B, Q, 2)."""
    rel = coord - code_coord
    rel[..., 0] *= h
    rel[..., 1] *= w
    return rel


def relative_cell(cell: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, Q, 2) query cell in latent-cell units (what the decoders see of the scale)."""
    rel_cell = cell.clone()
    rel_cell[..., 0] *= h
    rel_cell[..., 1] *= w
    return rel_cell


def area(rel_coord: torch.Tensor) -> torch.Tensor:
    """(B, Q) area between the query and its code, the weight of the opposite code."""
    return torch.abs(rel_coord[..., 0] * rel_coord[..., 1]) + AREA_EPS


def blend(preds: List[torch.Tensor], areas: List[torch.Tensor],
          local_ensemble: bool = True) -> torch.Tensor:
    """Eq. 4: each code's (B, Q, C) prediction weighted by the area of the opposite rectangle."""
    tot_area = torch.stack(areas).sum(dim=0)
    if local_ensemble:
        areas = areas[::-1]
    ret = 0
    for pred, a in zip(preds, areas):
        ret = ret + pred * (a / tot_area).unsqueeze(-1)
    return ret


def members(feats: List[torch.Tensor], coord: torch.Tensor, local_ensemble: bool = True
            ) -> Iterator[Tuple[List[torch.Tensor], torch.Tensor]]:
    """Reference path: for each ensemble member, the maps in `feats` sampled at the member's
    code ((B, Q, C) each, one grid_sample per map as in the official code) and the query
    relative to that code (B, Q, 2).

    Args:
        feats: (B, C_i, h, w) maps sharing one latent grid.
        coord: (B, Q, 2) queries.
    """
    h, w = feats[0].shape[-2:]
    centres = code_coords(feats[0])
    offsets, eps_shift = shifts(local_ensemble)
    for vx, vy in offsets:
        coord_ = shifted(coord, vx, vy, h, w, eps_shift)
        sampled = [sample_nearest(f, coord_) for f in feats]
        yield sampled, relative(coord, sample_nearest(centres, coord_), h, w)


class Lookup(NamedTuple):
    """The latent grid of the fast paths: its size, and the rows whose tables they hold.

    h, w: the size of the whole grid.
    first_row, held_rows: the tables hold rows [first_row, first_row + held_rows) of the grid:
        all of them, or a band of a large image (inference.bands), whose queries stay in the
        whole image's frame, so a band decodes exactly as the whole grid does.
    """
    h: int
    w: int
    first_row: int
    held_rows: int


def make_lookup(h: int, w: int, first_row: int = 0,
                held_rows: Optional[int] = None) -> Lookup:
    """The Lookup of an (h, w) grid whose tables hold rows [first_row, first_row +
    held_rows) (default: all)."""
    return Lookup(h, w, first_row, h - first_row if held_rows is None else held_rows)


def code_indices(h: int, w: int, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, N) float32 row and column numbers of the code of an (h, w) grid nearest to each of
    (B, N, 2) points: grid_sample(mode='nearest') on maps of row and column numbers (each axis
    rounded on its own), so ties at cell borders resolve as the reference's lookups do; in
    float32 even under autocast (numbers above 256 are not exact in 16 bits)."""
    B = points.shape[0]
    rows = torch.arange(h, device=points.device, dtype=torch.float32).view(1, 1, h, 1)
    cols = torch.arange(w, device=points.device, dtype=torch.float32).view(1, 1, 1, w)
    with torch.autocast(points.device.type, enabled=False):
        points = points.float()
        return (sample_nearest(rows.expand(B, 1, h, 1), points)[..., 0],
                sample_nearest(cols.expand(B, 1, 1, w), points)[..., 0])


def nearest_codes(lookup: Lookup, coord: torch.Tensor, local_ensemble: bool = True
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fast paths: the codes each query blends, found at once for all members.

    The nearest codes come from code_indices (the reference's grid_sample(mode='nearest')
    rounding).

    Args:
        lookup: the latent grid (see Lookup).
        coord: (B, Q, 2) queries in the whole grid's frame.
        local_ensemble: the 4 nearest codes (in the official (vx, vy) order), else the one.

    Returns:
        (B, n, Q) long row numbers of the codes in the (B * held_rows * w)-row tables of the
        batch, and (B, n, Q, 2) the query relative to each code in latent-cell units (Eq. 3);
        n = 4 or 1. The same float32 sums as `shifted` and `relative`.
    """
    B, Q = coord.shape[:2]
    h, w = lookup.h, lookup.w
    offsets, eps_shift = shifts(local_ensemble)
    n = len(offsets)
    steps = coord.new_tensor([[vx / h + eps_shift, vy / w + eps_shift]
                              for vx, vy in offsets]).view(1, n, 1, 2)
    moved = (coord.unsqueeze(1) + steps).clamp_(-1 + BORDER_EPS, 1 - BORDER_EPS)
    row, col = code_indices(h, w, moved.view(B, n * Q, 2))
    row, col = row.view(B, n, Q), col.view(B, n, Q)
    # The codes' centres as make_coord computes them (the same float32 operations).
    centres = torch.stack([(-1 + 1 / h) + (2 / h) * row, (-1 + 1 / w) + (2 / w) * col], dim=-1)
    rel_coord = (coord.unsqueeze(1) - centres).mul_(coord.new_tensor([h, w]))
    rows = (row.long() - lookup.first_row) * w + col.long() + \
        (torch.arange(B, device=coord.device) * (lookup.held_rows * w)).view(B, 1, 1)
    return rows, rel_coord
