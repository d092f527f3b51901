"""The memory plan: every number a render runs with, decided once per image from (model,
input size, options, device): encoder tiles, latent bands, queries per decoder call, output
rows per band; and a render's progress against it, for the time left.

The budget (`--max-memory`) bounds the process's working memory, everything it allocates
beyond the interpreter and its libraries: the caller's images (`held`), the model's weights,
the normalised input, the encoder's activations, the latent codes and the decoder's features
held, one decoder call, and the output bands in flight (the writer's queue included), from
the model's measured costs (inference.costs).
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from models import ImplicitDecoder
from utils.devices import available_memory
from utils.image_io.write import PNG_THREADS, QUEUED_PER_THREAD
from utils.units import format_bytes
from .costs import Costs
from .options import RenderOptions
from .tiling import tiling_geometry

FALLBACK_BUDGET = 4 << 30
# Tile and band sides tried, in codes (rounded down to SwinIR's window).
TILE_SIDES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
              4096)
# Far above what any model here needs per input pixel or query (the largest, LTE on SwinIR,
# about 17 KB per pixel and 12 KB per query), so that small images skip the probe.
SURE_FIT_BYTES_PER_PIXEL = 64 * 1024

# Queries per decoder call. A CPU runs the fast path best in chunks small enough for its
# activations to stay in cache (the model's fast_chunk_size), the reference path in the
# official chunks of 30000 (LIIF's eval_bsize). A GPU runs best in the largest chunks it can
# hold (each call is a few dozen kernel launches: 4096-query chunks made the fast path 4x
# slower than the reference on an H200), up to GPU_MAX_CHUNK, beyond which it is saturated
# while memory keeps growing. On both, one call takes at most 1 / CALL_SHARE of the budget.
CPU_REFERENCE_CHUNK = 30000
GPU_MAX_CHUNK = 1 << 18
CALL_SHARE = 4

# Output pixels per band when the decoder's chunks are smaller (the fast path on a CPU): a
# band is a unit of the output's memory and of progress, not of decoder work.
BAND_PIXELS = 65536
# Bytes per output pixel of a band in flight: the decoder's float RGB, its de-normalised copy
# and the caller's float copy (3 x 12), and the 8-bit or 16-bit samples written (up to 8).
BAND_BYTES_PER_PIXEL = 3 * 12 + 8
# Bytes per output pixel CMSR adds to a band in flight (models.cmsr.cmsr_bands): the last
# level's coordinates, its sampled pixels and their copy, the selection, the picked pixels'
# indices and coordinates.
CMSR_BAND_BYTES_PER_PIXEL = 8 + 2 * 12 + 5 + 16
# Bytes per output pixel of a band in the writer's queue: its samples and their compressed
# form (at most about the same size).
QUEUED_BYTES_PER_PIXEL = 2 * 8


@dataclass(frozen=True)
class Plan:
    """Every number a render runs with.

    encoder_tile: (rows, columns) of the encoder's tiles in codes (None: the image whole).
    band_rows: latent-code rows whose decoder features are held at once (None: the whole
        latent grid). In bands, the encoder's tiles come a row of tiles at a time (the whole
        image at once without encoder_tile).
    chunk_size: queries per decoder call (None: all the queries of a call at once, for a
        whole_grid model without a protocol's chunks).
    output_rows: output rows per band (`Renderer.bands`).
    estimate: bytes the plan is expected to need at its peak, everything in the budget.
    budget: the bytes it was planned for.
    image_tiles: (tile, overlap) in input pixels when the image is rendered with CiaoSR's
        tiled test (a model without separable features, too large to run whole).
    """
    encoder_tile: Optional[Tuple[int, int]]
    band_rows: Optional[int]
    chunk_size: Optional[int]
    output_rows: int
    estimate: int
    budget: int
    image_tiles: Optional[Tuple[int, int]] = None


def default_budget(device: torch.device) -> int:
    """The budget when none is given: half of the memory the system has available (CPU,
    /proc/meminfo's MemAvailable, FALLBACK_BUDGET where unknown), or 80% of the GPU's free
    memory. Images whose whole-image run fits it run whole; larger ones get tiles."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    available = available_memory()
    return FALLBACK_BUDGET if available is None else available // 2


def queries_per_call(model: ImplicitDecoder, options: RenderOptions, device: torch.device,
                     budget: float, per_query: Optional[float]) -> Optional[int]:
    """The chunk the device runs best (see CPU_REFERENCE_CHUNK), capped by
    options.chunk_size and by 1 / CALL_SHARE of the budget (per_query None: not capped by it);
    a whole_grid model gets options.chunk_size itself (only a protocol may set its chunks)."""
    if model.whole_grid:
        return options.chunk_size
    fast = options.impl == 'fast' and model.supports_fast
    chunk = GPU_MAX_CHUNK if device.type != 'cpu' else \
        (model.fast_chunk_size or CPU_REFERENCE_CHUNK) if fast else CPU_REFERENCE_CHUNK
    if options.chunk_size is not None:
        chunk = min(chunk, options.chunk_size)
    if per_query is not None:
        chunk = min(chunk, int(budget / CALL_SHARE / max(per_query, 1.0)))
    return max(1, chunk)


def band_output_rows(options: RenderOptions, chunk: Optional[int], width: int,
                     room: Optional[float] = None) -> int:
    """Output rows per band: options.chunk_size pixels, else the larger of a decoder call and
    BAND_PIXELS, at most what `room` bytes hold with the writer's queue; at least one row."""
    pixels = options.chunk_size or max(chunk or 0, BAND_PIXELS)
    rows = max(1, pixels // width)
    if room is not None:
        rows = max(1, min(rows, int(room // band_bytes(1, width, options))))
    return rows


def band_bytes(rows: int, width: int, options: RenderOptions) -> int:
    """Bytes of the output bands in flight: one being made, those the writer queues."""
    queued = QUEUED_PER_THREAD * PNG_THREADS
    made = BAND_BYTES_PER_PIXEL + (CMSR_BAND_BYTES_PER_PIXEL if options.cmsr else 0)
    return rows * width * (made + queued * QUEUED_BYTES_PER_PIXEL)


def make_plan(model: ImplicitDecoder, size: Tuple[int, int], device: torch.device,
              options: RenderOptions, costs: Callable[[], Costs],
              output: Optional[Tuple[int, int]] = None, held: int = 0) -> Plan:
    """The plan of an (h, w) input (after any window padding), for an (H, W) output in bands
    (`output`) or, without one, a scene that keeps the latent grid whole (evaluation, the
    viewer). Forced tiles in the options are taken as they are; otherwise the whole-image
    run whenever it fits, else the tiles and bands of least extra work that fit.

    Args:
        costs: the model's measured costs (called only when the image may not fit whole).
        held: bytes the caller holds for this render (its decoded images, an output encoded
            from memory), counted in the budget.

    Raises:
        ValueError: a budget (one the user gave) too small for this model and image.
    """
    budget = options.max_memory or default_budget(device)
    strict = options.max_memory is not None
    h, w = size
    width = output[1] if output is not None else 0
    forced = options.encoder_tile is not None or options.band_rows is not None
    if forced and not model.separable_features:
        raise ValueError(f"{type(model).__name__}'s features see the whole image: encoder tiles "
                         "and latent bands do not apply (its tiled test does, when needed)")
    if forced or (h * w + BAND_PIXELS) * SURE_FIT_BYTES_PER_PIXEL + held <= budget:
        chunk = queries_per_call(model, options, device, budget, None if device.type == 'cpu'
                                 else costs().per_query)
        rows = band_output_rows(options, chunk, width) if output else 0
        tile, band_rows = None, None
        if forced:
            tile = options.encoder_tile or (options.band_rows,) * 2
            band_rows = options.band_rows if output and not model.whole_grid else None
        return Plan(tile, band_rows, chunk, rows, 0, int(budget))
    return fit(model, (h, w), output, options, device, costs(), budget, held, strict)


def fit(model: ImplicitDecoder, size: Tuple[int, int], output: Optional[Tuple[int, int]],
        options: RenderOptions, device: torch.device, costs: Costs, budget: float, held: int,
        strict: bool) -> Plan:
    """make_plan's search once the costs are measured (see make_plan)."""
    h, w = size
    chunk = queries_per_call(model, options, device, budget, costs.per_query)
    decode = (chunk or h * w) * costs.per_query
    fixed = held + costs.weights + 2 * 12 * h * w + decode  # the normalised input, and a call
    rows = 0
    if output is not None:
        rows = band_output_rows(options, chunk, output[1], (budget - fixed) / 8)
        fixed += band_bytes(rows, output[1], options)
    grid = (costs.code + costs.feature_per_code) * h * w
    whole = fixed + costs.encoder_per_pixel * h * w + grid
    if whole <= budget:
        return Plan(None, None, chunk, rows, int(whole), int(budget))
    if not model.separable_features:
        return image_tiles_plan(model, size, output, costs, budget, fixed - 2 * 12 * h * w,
                                chunk, rows)
    encoder = getattr(model, 'encoder', None)
    halo, align = tiling_geometry(encoder) if encoder is not None else (0, 1)
    grid_rows = output is None or model.whole_grid  # SRNO streams over the whole latent grid
    reach = model.code_reach
    sides = sorted({max(align, s - s % align) for s in TILE_SIDES if s < 2 * max(h, w)})

    def need(tile_rows: int, cols: int, segment: int) -> float:
        enc = costs.encoder_per_pixel * min(tile_rows + 2 * halo, h) * \
            min(cols + 2 * halo, w)
        if grid_rows:
            return fixed + enc + grid
        # two blocks of code rows, a segment's codes and features (see inference.bands)
        kept = 2 * tile_rows * w * costs.code + \
            (segment + 2 * reach) * w * (costs.code + costs.feature_per_code)
        return fixed + enc + kept

    def overhead(tile_rows: int, cols: int, segment: int) -> float:
        """Work beyond the whole-image run: halos re-encoded, segment margins re-projected."""
        enc = (min(tile_rows + 2 * halo, h) / min(tile_rows, h)) * \
            (min(cols + 2 * halo, w) / min(cols, w))
        return enc + (0 if grid_rows else 0.25 * (segment + 2 * reach) / segment)

    options_ = [(overhead(r, c, g), r, c, g) for r in sides for c in sides
                for g in ([None] if grid_rows else [x for x in sides if x <= r])]
    fitting = [o for o in options_ if need(*o[1:]) <= budget]
    if not fitting:
        least = min(options_, key=lambda o: need(*o[1:]))
        if strict:
            # A decoder call takes its share of any budget: the least budget that fits.
            share = 1 / CALL_SHARE if chunk and decode >= budget / CALL_SHARE - costs.per_query \
                else 0
            least_budget = (need(*least[1:]) - share * budget) / (1 - share)
            raise ValueError(f"a memory budget of {format_bytes(budget)} is too small for "
                             f"this model on a {w}x{h} input: it needs at least "
                             f"{format_bytes(least_budget)}")
        fitting = [least]
    _, tile_rows, cols, segment = min(fitting)
    estimate = int(need(tile_rows, cols, segment))
    tile = (min(tile_rows, h), min(cols, w))
    return Plan(None if tile == (h, w) else tile, segment, chunk, rows, estimate, int(budget))


# CiaoSR's tiled test: its official tile and overlap first, smaller tiles if the budget needs.
IMAGE_TILE_SIDES = (192, 128, 96, 64, 48)
IMAGE_TILE_OVERLAP = 32


def image_tiles_plan(model: ImplicitDecoder, size: Tuple[int, int],
                     output: Optional[Tuple[int, int]], costs: Costs, budget: float,
                     fixed: float, chunk: Optional[int], rows: int) -> Plan:
    """The plan of a model whose features see the whole image (CiaoSR) on an image too large
    to run whole: its tiled test, the largest tiles that fit (inference.tiled_test)."""
    h, w = size
    if output is None:
        raise ValueError(f"a {w}x{h} input does not fit the memory budget "
                         f"({format_bytes(budget)}) whole, and {type(model).__name__}'s "
                         "features see the whole image: use its tiled test (test.py "
                         "--ciaosr-tiles) or a larger budget")
    H, W = output
    for side in IMAGE_TILE_SIDES:
        t = min(side, h, w)
        tile_cost = 2 * 12 * t * t + costs.encoder_per_pixel * t * t + \
            (costs.code + costs.feature_per_code) * t * t
        canvas = 2 * 12 * (t * H // h) * W  # the sums and weights of a row of tiles
        need = fixed + 12 * h * w + tile_cost + canvas
        if need <= budget:
            return Plan(None, None, chunk, rows, int(need), int(budget),
                        (t, min(IMAGE_TILE_OVERLAP, t // 2)))
    raise ValueError(f"a memory budget of {format_bytes(budget)} is too small for "
                     f"{type(model).__name__} on a {w}x{h} input, even in tiles of "
                     f"{IMAGE_TILE_SIDES[-1]}: it needs at least {format_bytes(need)}")


def describe(plan: Plan) -> str:
    """One line: how the plan runs the model."""
    chunk = 'all queries at once' if plan.chunk_size is None else \
        f'{plan.chunk_size} queries per call'
    bands = f', output bands of {plan.output_rows} rows' if plan.output_rows else ''
    estimate = f' (about {format_bytes(plan.estimate)} of {format_bytes(plan.budget)})' \
        if plan.estimate else ''
    if plan.image_tiles is not None:
        return ('image tiles of {} pixels overlapping by {}, each run as an image of its own '
                "(CiaoSR's tiled test), ").format(*plan.image_tiles) + \
            f'{chunk}{bands}{estimate}'
    if plan.encoder_tile is None and plan.band_rows is None:
        return f'whole image, {chunk}{bands}{estimate}'
    encoder = 'the encoder on the whole image' if plan.encoder_tile is None else \
        'encoder tiles of {}x{} codes'.format(*plan.encoder_tile)
    grid = 'whole latent grid' if plan.band_rows is None else \
        f'decoder features in bands of {plan.band_rows} code rows'
    return f'{encoder}, {grid}, {chunk}{bands}{estimate}'


@dataclass
class Progress:
    """How far a render in bands is, kept by Renderer.bands (and RowBlocks) as it goes: the
    latent rows encoded and the output rows decoded so far, of how many, in how long. The
    time left is known once the encoder has run and the decoder's rate is measured over
    `RATE_BANDS` bands after the first (which pays for warm-up)."""
    RATE_BANDS = 2
    encoder_rows: int = 0
    encoder_rows_total: int = 0
    encoder_seconds: float = 0.0
    output_rows: int = 0
    output_rows_total: int = 0
    bands: int = 0
    rate_rows: int = 0          # output rows, and their decoding seconds, after the first band
    rate_seconds: float = 0.0

    def seconds_left(self) -> Optional[float]:
        """Seconds the rest should take at the rates measured so far; None until known."""
        if self.bands <= self.RATE_BANDS or not self.encoder_rows or not self.rate_rows:
            return None
        encoder = self.encoder_seconds / self.encoder_rows * \
            (self.encoder_rows_total - self.encoder_rows)
        return encoder + self.rate_seconds / self.rate_rows * \
            (self.output_rows_total - self.output_rows)
