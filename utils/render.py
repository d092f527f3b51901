"""Rendering a LIIF image of any size in bands of rows, with bounded memory."""
from typing import Iterator, Tuple

import torch
from torch import nn

from models.query import decode_in_chunks, prepare_query
from .coords import make_coord
from .devices import autocast


def band_coords(H: int, W: int, row0: int, row1: int, device: torch.device) -> torch.Tensor:
    """Coordinates of output rows [row0, row1) of an H x W grid, (1, (row1 - row0) * W, 2).

    Equal to make_coord((H, W))[row0 * W:row1 * W] without building the whole grid.
    """
    rows = make_coord((H,), device=device)[row0:row1, 0]
    cols = make_coord((W,), device=device)[:, 0]
    return torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(1, -1, 2)


@torch.no_grad()
def render_bands(model: nn.Module, inp: torch.Tensor, size: Tuple[int, int], tile: int,
                 impl: str = 'fast', precision: str = 'fp32'
                 ) -> Iterator[Tuple[int, torch.Tensor]]:
    """Renders the LIIF of `inp` at `size`, one band of whole rows at a time.

    Each band holds at most `tile` queries (at least one row), so neither the coordinate grid
    nor the float output ever exists whole.

    Args:
        inp: (1, 3, h, w) normalised input, (x - 0.5) / 0.5.
        size: output (H, W); the per-axis scales H/h and W/w may differ.
        tile: queries per band.
        impl: 'fast' or 'reference' query path.
        precision: 'fp32', or 'bf16'/'fp16' autocast for the decoder (the encoder stays fp32).

    Yields:
        (first row, (rows, W, 3) float32 CPU tensor in [0, 1], clamped, not quantised).
    """
    H, W = size
    decode = prepare_query(model, model.encode(inp), impl)
    cell_value = torch.tensor([2 / H, 2 / W], device=inp.device)
    rows_per_band = max(1, tile // W)
    for row0 in range(0, H, rows_per_band):
        row1 = min(H, row0 + rows_per_band)
        coord = band_coords(H, W, row0, row1, inp.device)
        with autocast(inp.device, precision):
            pred = decode_in_chunks(decode, coord, cell_value.expand_as(coord), tile)
        yield row0, (pred.float() * 0.5 + 0.5).clamp_(0, 1).view(row1 - row0, W, 3).cpu()
