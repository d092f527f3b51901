"""Coordinate grids: pixel centres of an image in the continuous domain [-1, 1]^2."""
from typing import Optional, Sequence, Tuple

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
