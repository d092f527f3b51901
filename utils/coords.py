"""Coordinate grids: pixel centres of an image in the continuous domain [-1, 1]^2."""
import numbers
from typing import Dict, Optional, Sequence, Tuple

import torch


def make_coord(shape: Sequence[int], ranges: Optional[Sequence[Tuple[float, float]]] = None,
               flatten: bool = True, device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Coordinates of the pixel centres of a grid.

    Args:
        shape: grid size per dimension, e.g. (H, W).
        ranges: (v0, v1) per dimension; default (-1, 1) for every dimension.
        flatten: return (H*W, 2) instead of (H, W, 2).

    Returns:
        (H, W, 2) or (H*W, 2) tensor, last dim (row, col), each in (v0, v1):
        centre i of n cells is v0 + (2i + 1) * (v1 - v0) / (2n).
    """
    if not all(isinstance(n, numbers.Integral) and n >= 1 for n in shape):
        raise ValueError(f"make_coord: the grid size must be integers >= 1, got {tuple(shape)}")
    seqs = []
    for i, n in enumerate(shape):
        v0, v1 = (-1, 1) if ranges is None else ranges[i]
        r = (v1 - v0) / (2 * n)
        # Same float32 arithmetic as the official code, so coordinates match bit for bit.
        seqs.append(v0 + r + (2 * r) * torch.arange(n, device=device).float())
    ret = torch.stack(torch.meshgrid(*seqs, indexing='ij'), dim=-1).to(dtype)
    if flatten:
        ret = ret.view(-1, ret.shape[-1])
    return ret


def grid_of(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(1, len(rows) * len(cols), 2) coordinates of the grid rows x cols, row-major."""
    return torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(1, -1, 2)


def band_coords(H: int, W: int, row0: int, row1: int,
                device: Optional[torch.device] = None) -> torch.Tensor:
    """Coordinates of output rows [row0, row1) of an H x W grid, (1, (row1 - row0) * W, 2).

    Equal to make_coord((H, W))[row0 * W:row1 * W] without building the whole grid.
    """
    rows = make_coord((H,), device=device)[row0:row1, 0]
    return grid_of(rows, make_coord((W,), device=device)[:, 0])


def to_pixel_samples(img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Splits an image into coordinates and values.

    Args:
        img: (C, H, W) image.

    Returns:
        coord (H*W, 2) in (-1, 1), (row, col); values (H*W, C), row-major order.
    """
    coord = make_coord(img.shape[-2:], device=img.device)
    values = img.reshape(img.shape[0], -1).permute(1, 0)
    return coord, values


def make_cell(coord: torch.Tensor, hr_shape: Sequence[int]) -> torch.Tensor:
    """Cell size of every query: (2/H, 2/W), the size of one output pixel in [-1, 1] units.

    Args:
        coord: (..., 2) query coordinates (only its shape, device and dtype are used).
        hr_shape: (H, W) of the output grid.
    """
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / hr_shape[0]
    cell[..., 1] *= 2 / hr_shape[1]
    return cell


def grid_to_flat(coord: torch.Tensor, cell: Optional[torch.Tensor]
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Official grid queries to flat ones.

    Args:
        coord: (B, H, W, 2) query grid, (row, col).
        cell: (B, 2) cell of the whole grid, (B, H, W, 2) or (B, Q, 2) per query, or None.

    Returns:
        coord (B, H*W, 2) row-major, cell (B, H*W, 2) or None.
    """
    B, H, W, _ = coord.shape
    flat = coord.reshape(B, H * W, 2)
    if cell is None:
        return flat, None
    if cell.dim() == 2:
        return flat, cell.unsqueeze(1).expand(B, H * W, 2)
    return flat, cell.reshape(B, H * W, 2)


def flat_to_grid(values: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H*W, C) row-major query values -> (B, C, H, W) image."""
    return values.view(values.shape[0], H, W, -1).permute(0, 3, 1, 2)


def flat_batch(batch: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor],
                                                        Optional[Tuple[int, int]]]:
    """A batch of either sample form as flat queries.

    Flat samples (sr-implicit-paired, -downsampled, ...) have coord (B, Q, 2), cell (B, Q, 2),
    gt (B, Q, 3); grid samples (the official `-fast` wrappers of LTE and SRNO) have coord
    (B, H, W, 2), cell (B, 2), gt (B, 3, H, W).

    Returns:
        ({'inp', 'coord' (B, Q, 2), 'cell' (B, Q, 2), 'gt' (B, Q, 3)}, (H, W) of the grid or
        None for flat samples, whose grid shape is not recorded).
    """
    if batch['coord'].dim() == 3:
        return batch, None
    H, W = batch['coord'].shape[1:3]
    coord, cell = grid_to_flat(batch['coord'], batch['cell'])
    gt = batch['gt'].flatten(2).transpose(1, 2)
    return {**batch, 'coord': coord, 'cell': cell, 'gt': gt}, (H, W)
