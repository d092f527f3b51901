"""Rendering a model's image at any size in bands of rows, with bounded memory."""
import logging
from typing import Iterator, Optional, Tuple, Union

import torch

from models import ImplicitDecoder
from utils.coords import make_coord
from utils.devices import autocast
from .bands import decode_bands
from .chunks import effective_chunk_size
from .tiling import encode
from .window import pad_to_window, to_padded_domain

logger = logging.getLogger(__name__)


def band_coords(H: int, W: int, row0: int, row1: int, device: torch.device) -> torch.Tensor:
    """Coordinates of output rows [row0, row1) of an H x W grid, (1, (row1 - row0) * W, 2).

    Equal to make_coord((H, W))[row0 * W:row1 * W] without building the whole grid.
    """
    rows = make_coord((H,), device=device)[row0:row1, 0]
    cols = make_coord((W,), device=device)[:, 0]
    return torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(1, -1, 2)


@torch.no_grad()
def render_bands(model: ImplicitDecoder, inp: torch.Tensor, size: Tuple[int, int],
                 chunk_size: int, impl: str = 'fast', precision: str = 'fp32',
                 window: Optional[int] = None,
                 encoder_tile: Optional[Union[int, Tuple[int, int]]] = None,
                 band_rows: Optional[int] = None) -> Iterator[Tuple[int, torch.Tensor]]:
    """Renders the continuous image of `inp` at `size`, one band of whole rows at a time.

    Each band holds at most `chunk_size` queries (at least one row), so neither the
    coordinate grid nor the float output ever exists whole. A whole_grid model (SRNO) streams
    over the bands in passes (see models.ImplicitDecoder.query_stream) and gives its
    whole-grid output.

    Args:
        inp: (1, 3, h, w) normalised input, (x - 0.5) / 0.5.
        size: output (H, W); the per-axis scales H/h and W/w may differ.
        chunk_size: queries per band.
        impl: 'fast' or 'reference' query path.
        precision: 'fp32', or 'bf16'/'fp16' autocast for the decoder (the encoder stays fp32).
        window: mirror-pad the input to this window first, as LTE evaluates SwinIR encoders
            (see inference.window); None for no padding.
        encoder_tile: encode the input in tiles of this side, or (rows, columns) (see
            inference.tiling), the same latent codes in less encoder memory; None encodes the
            whole image at once.
        band_rows: hold the latent codes in bands of at least this many rows, each band of
            output rows decoded from the rows it reads (see inference.bands; the encoder
            tiles are then encoder_tile, default band_rows); None holds the whole latent
            grid. Not for whole_grid models (SRNO), whose passes read every row: they keep
            the whole latent grid (encoded in tiles when encoder_tile is given).

    Yields:
        (first row, (rows, W, 3) float32 CPU tensor in [0, 1], clamped, not quantised).
    """
    H, W = size
    h, w = inp.shape[-2:]
    if window:
        inp = pad_to_window(inp, window)
    padded = tuple(inp.shape[-2:]) if window else None
    rows_per_band = max(1, chunk_size // W)
    starts = range(0, H, rows_per_band)
    cell_value = torch.tensor([2 / H, 2 / W], device=inp.device)

    def bands():
        for row0 in starts:
            coord = band_coords(H, W, row0, min(H, row0 + rows_per_band), inp.device)
            cell = cell_value.expand_as(coord)
            if padded is not None:
                coord, cell = to_padded_domain(coord, cell, (h, w), padded)
            yield coord, cell

    if band_rows and not model.whole_grid:
        tile = encoder_tile or band_rows
        stream = decode_bands(model, inp, bands(), band_rows,
                              (tile, tile) if isinstance(tile, int) else tile, impl, chunk_size)
    else:
        if model.whole_grid:
            logger.info('%s attends over all queries: it streams over the bands in passes',
                        type(model).__name__)
        stream = model.query_stream(encode(model, inp, encoder_tile), bands, impl,
                                    effective_chunk_size(model, chunk_size, impl))
    for row0 in starts:
        with autocast(inp.device, precision):  # around the decoding only, not the caller
            pred = next(stream)
        rows = min(H, row0 + rows_per_band) - row0
        yield row0, (pred.float() * 0.5 + 0.5).clamp_(0, 1).view(rows, W, 3).cpu()
