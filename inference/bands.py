"""Band-wise encoding: each band of output rows is decoded from the latent codes of only the
input rows it needs, so neither the latent grid nor the output ever exists whole.

The codes are computed in blocks of rows (encoder tiles with their halo, see
inference.tiling), each block once, and dropped when the bands have moved past it. A band is
decoded from a segment of rows [a, b) of the h-row latent grid. The fast paths of LIIF and LTE
take the segment as rows [a, b) of the whole grid (`model.decoder(feat, 'fast', rows=(a, h))`,
models.ImplicitDecoder.exact_bands): the queries stay in the whole image's frame and a band
decodes bit for bit as from the whole grid. For the other paths the band's queries are moved
into the segment's own frame: the same code centres, relative coordinates and cells up to
float rounding (see sub_grid_queries).
"""
import math
import time
from typing import Dict, Iterator, Optional, Tuple

import torch

from models import ImplicitDecoder
from models.decoder import decode_in_chunks
from .compile import CompiledDecoder
from .options import RenderOptions
from .plan import Progress
from .tiling import encode_tiled


def needed_rows(coord: torch.Tensor, h: int, reach: int) -> Tuple[int, int]:
    """Rows [a, b) of an h-row latent grid that (B, Q, 2) queries read, reach rows beyond
    the two nearest codes of each query (see models.ImplicitDecoder.code_reach)."""
    rows = coord[..., 0]
    lo = (rows.min().item() + 1) * h / 2 - 0.5  # in code rows, centre i at i
    hi = (rows.max().item() + 1) * h / 2 - 0.5
    return max(0, math.floor(lo) - reach), min(h, math.ceil(hi) + reach + 1)


def sub_grid_queries(coord: torch.Tensor, cell: Optional[torch.Tensor], h: int, a: int, b: int
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Queries of an h-row grid moved into the frame of its rows [a, b): row r's centre
    -1 + (2r + 1) / h becomes -1 + (2(r - a) + 1) / (b - a); cell heights scale by h / (b - a).
    Columns are unchanged."""
    n = b - a
    rows = ((coord[..., :1].double() + 1) * h - 2 * a) / n - 1  # in float64: no extra rounding
    sub = torch.cat([rows.to(coord.dtype), coord[..., 1:]], dim=-1)
    return sub, None if cell is None else cell * cell.new_tensor([h / n, 1.0])


class RowBlocks:
    """The latent codes of an image in blocks of rows, each computed once (in tiles with a
    halo) and kept until the rows asked for have moved past it.

    Args:
        model: the decoder; its encoder computes the codes (a model without one, bicubic,
            gets the input rows themselves as its codes).
        inp: (1, 3, h, w) normalised input.
        tile: (rows, columns) of the encoder's tiles; a block is one row of tiles.
        progress: where the encoder's rows and seconds are counted, if given.
    """

    def __init__(self, model: ImplicitDecoder, inp: torch.Tensor, tile: Tuple[int, int],
                 progress: Optional[Progress] = None):
        self.encoder = getattr(model, 'encoder', None)
        self.inp = inp
        self.tile_shape = tile
        self.tile = tile[0]
        self.blocks: Dict[int, torch.Tensor] = {}
        self.progress = progress

    def rows(self, a: int, b: int) -> torch.Tensor:
        """(1, C, b - a, w) codes of rows [a, b); blocks above row a are dropped."""
        first, last = a // self.tile, (b - 1) // self.tile
        for k in [k for k in self.blocks if k < first]:
            del self.blocks[k]
        h = self.inp.shape[-2]
        for k in range(first, last + 1):
            if k not in self.blocks:
                r0, r1 = k * self.tile, min(h, (k + 1) * self.tile)
                start = time.perf_counter()
                self.blocks[k] = self.inp[..., r0:r1, :] if self.encoder is None else \
                    encode_tiled(self.encoder, self.inp, self.tile_shape, rows=(r0, r1))
                if self.progress is not None:
                    self.progress.encoder_rows += r1 - r0
                    self.progress.encoder_seconds += time.perf_counter() - start
        parts = [self.blocks[k][..., max(a, k * self.tile) - k * self.tile:
                                min(b, (k + 1) * self.tile) - k * self.tile, :]
                 for k in range(first, last + 1)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def decode_bands(model: ImplicitDecoder, inp: torch.Tensor, bands: Iterator[Tuple[
        torch.Tensor, Optional[torch.Tensor]]], band_rows: int, tile: Tuple[int, int],
                 options: RenderOptions, chunk_size: Optional[int],
                 progress: Optional[Progress] = None) -> Iterator[torch.Tensor]:
    """Decodes each (coord, cell) band of queries (in the frame of the whole (1, 3, h, w)
    `inp`, rows in increasing order) from the codes of the rows it reads.

    A segment of at least `band_rows` code rows is made ready at once (its codes turned into
    the decoder's features, e.g. LIIF's projections) and serves the bands that fall inside it;
    the codes come from encoder tiles of `tile` (rows, columns). Each band is decoded in
    calls of `chunk_size` queries (None: at once), with the options' path and compilation.

    Yields:
        (1, q, 3) per band, equal to decoding it from the whole latent grid (up to rounding).
    """
    blocks = RowBlocks(model, inp, tile, progress)
    h = inp.shape[-2]
    exact = options.impl == 'fast' and model.exact_bands
    segment, decode = (0, 0), None
    for coord, cell in bands:
        a, b = needed_rows(coord, h, model.code_reach)
        if not (segment[0] <= a and b <= segment[1]):
            segment = (a, min(h, max(b, a + band_rows)))
            sub_inp = inp[..., segment[0]:segment[1], :]
            decode = None  # free the previous features before making the next
            # The encoder and the features from its codes in float32 even when the caller
            # decodes under autocast, as the whole-image path computes them.
            with torch.autocast(inp.device.type, enabled=False):
                feat = model.encode(sub_inp) if blocks.encoder is None else \
                    model.from_codes(inp if exact else sub_inp, blocks.rows(*segment))
            rows = (segment[0], h) if exact else None
            decode = model.decoder(feat, options.impl, rows)
            if options.compile:
                decode = CompiledDecoder(decode, chunk_size)
            del feat
        if not exact:
            coord, cell = sub_grid_queries(coord, cell, h, *segment)
        yield decode_in_chunks(decode, coord, cell, chunk_size)
