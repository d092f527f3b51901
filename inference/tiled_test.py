"""CiaoSR's tiled test (its restorer's test with `tile` and `tile_overlap`), as the official
code does it: square tiles of min(tile, h, w) LR pixels at a stride of tile - overlap (and one
more flush with the bottom / right edge), each run as a whole image of its own (its own
coordinate grid, cell and non-local attention), the outputs averaged where tiles overlap.
Integer scales only. Where the official code leaves pixels uncovered (a short side under the
overlap of a non-square image: a negative stride) and writes NaN there, this refuses with an
error instead: a score over NaN means nothing.
"""
import time
from typing import Callable, Iterator, List, Optional, Tuple

import torch

from utils.coords import make_coord


# The official test configs: tiles of 192 LR pixels overlapping by 32, at scales up to x4.
OFFICIAL_TILES = (192, 32)
TILED_MAX_SCALE = 4


def parse_tiles(text: Optional[str], protocol: str) -> Optional[Tuple[int, int]]:
    """--ciaosr-tiles: 'T,O' -> (T, O); 'none' -> None; unset -> the official (192, 32) for
    the ciaosr protocol, None for the others."""
    if text is None:
        return OFFICIAL_TILES if protocol == 'ciaosr' else None
    if text.strip().lower() == 'none':
        return None
    try:
        tile, overlap = (int(v) for v in text.split(','))
    except ValueError:
        raise ValueError(f"--ciaosr-tiles must be TILE,OVERLAP (e.g. 192,32) or none, got "
                         f"'{text}'") from None
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"--ciaosr-tiles {text}: the tile must be >= 1 and the overlap in "
                         "[0, tile)")
    return tile, overlap


def tile_starts(size: int, tile: int, stride: int) -> List[int]:
    """The official starts on one axis: 0, stride, ... below size - tile, then size - tile."""
    return list(range(0, size - tile, stride)) + [size - tile]


def check_tiles(h: int, w: int, tile: int, overlap: int) -> Tuple[int, int]:
    """(tile side, stride) for an h x w input, or ValueError where the official tiles would
    leave pixels uncovered."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tiles of {tile} with overlap {overlap}: the tile must be >= 1 and "
                         "the overlap >= 0")
    side = min(tile, h, w)
    stride = side - overlap
    if stride <= 0 and (side < h or side < w):
        raise ValueError(f"a {w}x{h} input in tiles of {side} (its short side) with overlap "
                         f"{overlap}: the stride {stride} leaves pixels uncovered (the official "
                         "code writes NaN there); use a smaller overlap or the whole-image test")
    return side, max(stride, 1)


def grid_queries(rows: int, cols: int, batch: int, device: torch.device
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, rows*cols, 2) pixel centres and their (B, rows*cols, 2) cells."""
    coord = make_coord((rows, cols), device=device).unsqueeze(0).expand(batch, -1, -1)
    cell = torch.tensor([2 / rows, 2 / cols], device=device).expand_as(coord)
    return coord, cell


Decode = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def tile_rows(decode: Decode, inp: torch.Tensor, scale: int, tile: int, overlap: int
              ) -> Iterator[Tuple[int, torch.Tensor]]:
    """The tiled test a row of tiles at a time: (B, 3, h, w) input -> (first output row,
    (B, 3, rows, w*scale) averaged output) as soon as no later tile touches those rows. Only
    one row of tiles' sums and weights is held.

    decode(tile_input, coord, cell) -> (B, Q, 3): the model on one tile as a whole image.
    """
    B, _, h, w = inp.shape
    side, stride = check_tiles(h, w, tile, overlap)
    starts = tile_starts(h, side, stride)
    out = side * scale
    acc = inp.new_zeros(B, 3, out, w * scale)
    weight = inp.new_zeros(1, 1, out, w * scale)
    coord, cell = grid_queries(out, out, B, inp.device)
    base = 0                                           # the output row acc's first row is
    for i, r in enumerate(starts):
        rows = slice(r * scale - base, (r + side) * scale - base)
        for c in tile_starts(w, side, stride):
            pred = decode(inp[..., r:r + side, c:c + side], coord, cell)
            cols = slice(c * scale, (c + side) * scale)
            acc[..., rows, cols] += pred.transpose(1, 2).reshape(B, 3, out, out)
            weight[..., rows, cols] += 1
        done = (starts[i + 1] if i + 1 < len(starts) else h) * scale - base
        yield base, acc[..., :done, :] / weight[..., :done, :]
        keep = out - done  # rows the next row of tiles overlaps: moved to the top
        acc[..., :keep, :] = acc[..., done:, :].clone()
        weight[..., :keep, :] = weight[..., done:, :].clone()
        acc[..., keep:, :] = 0
        weight[..., keep:, :] = 0
        base += done


def tiled_predict(decode: Decode, inp: torch.Tensor, scale: int, tile: int, overlap: int
                  ) -> torch.Tensor:
    """(B, 3, h, w) normalised input -> (B, 3, h*scale, w*scale) normalised prediction (see
    tile_rows)."""
    return torch.cat([band for _, band in tile_rows(decode, inp, scale, tile, overlap)], dim=2)


def scene_decoder(renderer) -> Decode:
    """A renderer's (inference.Renderer) model on one tile as an image of its own: [0, 1] in,
    de-normalised RGB out, not clamped (the restorer clamps the averaged output)."""
    return lambda tile_image, coord, cell: \
        renderer.scene(tile_image).decode(coord, cell, clamp=False)


def tiled_render(renderer, image: torch.Tensor, scale: int, tile: int, overlap: int
                 ) -> torch.Tensor:
    """The tiled test through a renderer: (B, 3, h, w) image in [0, 1] -> (B, h*scale *
    w*scale, 3) in [0, 1], the overlaps averaged before clamping (as the official restorer)."""
    out = tiled_predict(scene_decoder(renderer), image, scale, tile, overlap)
    return out.clamp_(0, 1).flatten(2).transpose(1, 2)


def tiled_bands(renderer, image: torch.Tensor, size: Tuple[int, int], tiles: Tuple[int, int],
                progress) -> Iterator[Tuple[int, torch.Tensor]]:
    """Renderer.bands through the tiled test: (1, 3, h, w) image in [0, 1] at an integer
    scale -> (first row, (rows, W, 3) float32 CPU band in [0, 1]), a band per row of tiles."""
    (H, W), (h, w) = size, image.shape[-2:]
    scale = H // h
    if H != h * scale or W != w * scale:
        raise ValueError(f"the tiled test renders integer scales (the same on both axes): a "
                         f"{w}x{h} input cannot give {W}x{H}")
    progress.output_rows_total, progress.encoder_rows_total = H, h
    start = time.perf_counter()
    for row0, band in tile_rows(scene_decoder(renderer), image, scale, *tiles):
        rows = band.shape[-2]
        progress.encoder_rows = min(h, (row0 + rows) // scale)
        progress.bands += 1
        progress.output_rows += rows
        if progress.bands > 1:  # the first pays for warm-up
            progress.rate_rows += rows
            progress.rate_seconds += time.perf_counter() - start
        yield row0, band[0].clamp_(0, 1).permute(1, 2, 0).cpu()
        start = time.perf_counter()
