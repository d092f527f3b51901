"""Memory budgets: measure what a model needs per pixel, then size tiles, bands and chunks to a
budget (`--max-memory` in demo.py and test.py).

The working memory of each step (encoder activations per input pixel, decoder features per
latent code, decoder activations per query) is measured, not guessed: the step runs once on a
small probe while a dispatch mode tracks every tensor storage the step allocates and frees
(the same count on CPU and GPU). All three grow linearly with their pixels or queries, so the
probe's peak divided by its size gives the cost of any size.
"""
import argparse
import math
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from models import ImplicitDecoder
from utils.devices import autocast
from utils.units import format_bytes
from .tiling import tiling_geometry

FALLBACK_BUDGET = 4 << 30
PROBE = 32          # side of the probe input (a multiple of SwinIR's window of 8)
PROBE_QUERIES = 2048
# Tile and band sides tried, in codes (rounded down to SwinIR's window).
TILE_SIDES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
              4096)
# Far above what any model here needs per input pixel or query (the largest, LTE on SwinIR,
# about 17 KB per pixel and 12 KB per query), so that small images skip the probe.
SURE_FIT_BYTES_PER_PIXEL = 64 * 1024
OUTPUT_BYTES_PER_QUERY = 3 * 4 * 3  # a band's float RGB, its clamped copy and the CPU copy


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created inside it and still alive; keeps the peak."""

    def __init__(self, exclude: Iterable[int]):
        super().__init__()
        self.exclude = set(exclude)
        self.refs: Dict[int, list] = {}
        self.live = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.refs[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in self.exclude:
                continue
            entry = self.refs.get(ptr)
            if entry is None:
                entry = self.refs[ptr] = [0, storage.nbytes()]
                self.live += entry[1]
                self.peak = max(self.peak, self.live)
            entry[0] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def peak_bytes(step: Callable[[], object], *keep: torch.Tensor,
               module: Optional[torch.nn.Module] = None) -> int:
    """Peak bytes of the tensors `step()` allocates (its result included), not counting the
    storages of `keep` and of `module`'s parameters and buffers."""
    exclude = [t.untyped_storage().data_ptr() for t in keep]
    if module is not None:
        exclude += [t.untyped_storage().data_ptr()
                    for t in (*module.parameters(), *module.buffers())]
    tracker = _LiveBytes(exclude)
    with torch.no_grad(), tracker:
        result = step()
        del result
    return tracker.peak


@dataclass(frozen=True)
class Costs:
    """Bytes a model needs: per input pixel in its encoder (peak activations, its output
    included), per latent code held (the codes) and per latent code for the decoder's features
    (e.g. LIIF's projections, or the reference path's unfolded codes made at each call), and
    per query decoded at once (activations and the band's output)."""
    encoder_per_pixel: float
    code: float
    feature_per_code: float
    per_query: float


def measure_costs(model: ImplicitDecoder, impl: str = 'fast', precision: str = 'fp32',
                  device: Optional[torch.device] = None) -> Costs:
    """Runs each step of `model` once on small probes (see the module docstring): the
    encoder on a PROBE x PROBE input, the decoder on PROBE/2 and PROBE grids (what grows with
    the grid rather than the queries is a cost per code)."""
    device = device or next(model.parameters(), torch.zeros(())).device
    encoder = getattr(model, 'encoder', None)
    q = min(PROBE_QUERIES, model.fast_chunk_size or PROBE_QUERIES)
    coord = torch.rand(1, q, 2, device=device) * 2 - 1
    cell = torch.full((1, q, 2), 2 / (4 * PROBE), device=device)

    def probe(side: int):
        inp = torch.zeros(1, 3, side, side, device=device)
        if encoder is None:
            enc, codes = 0, None
        else:
            enc = peak_bytes(lambda: encoder(inp), inp, module=model)
            with torch.no_grad():
                codes = encoder(inp)

        def features():
            return model.encode(inp) if codes is None else model.from_codes(inp, codes)

        def decoder():
            return model.decoder(features(), impl)

        kept = (inp,) if codes is None else (inp, codes)
        setup = peak_bytes(decoder, *kept, module=model)
        with torch.no_grad():
            decode = decoder()

        def query():
            with autocast(device, precision):
                return decode(coord, cell)
        n = side * side
        code = 0 if codes is None else codes.nbytes / n
        return enc / n, code, setup / n, peak_bytes(query, coord, cell, *kept, module=model)

    _, _, _, small = probe(PROBE // 2)
    enc, code, setup, large = probe(PROBE)
    grid_part = max(0.0, (large - small) / (PROBE ** 2 - (PROBE // 2) ** 2))
    per_query = max(0.0, large - grid_part * PROBE ** 2) / q
    return Costs(enc, code, setup + grid_part, per_query + OUTPUT_BYTES_PER_QUERY)


@dataclass(frozen=True)
class Plan:
    """How to run a model within a budget.

    encoder_tile: (rows, columns) of the encoder's tiles in codes (None: the image whole).
    band_rows: latent-code rows whose decoder features are held at once (None: the whole
        latent grid).
    chunk_size: queries decoded at once.
    estimate: bytes the plan is expected to need at its peak.
    """
    encoder_tile: Optional[Tuple[int, int]]
    band_rows: Optional[int]
    chunk_size: int
    estimate: int


def default_budget(device: torch.device) -> int:
    """The budget when none is given: half of the memory the system has available (CPU,
    /proc/meminfo's MemAvailable, FALLBACK_BUDGET where unknown), or 80% of the GPU's free
    memory. Images whose whole-image run fits it run whole, as before; larger ones get tiles."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        return int(info['MemAvailable'].split()[0]) * 1024 // 2
    except (OSError, KeyError, ValueError):
        return FALLBACK_BUDGET


MEMORY_UNITS = {'': 1, 'B': 1, 'K': 2 ** 10, 'KB': 2 ** 10, 'M': 2 ** 20, 'MB': 2 ** 20,
                'G': 2 ** 30, 'GB': 2 ** 30}


def parse_memory(text: str) -> int:
    """Bytes from a size such as 512MB, 2GB or 1e9 (argparse type: bad input is an error line)."""
    value = text.strip().upper()
    number = value.rstrip('KMGB')
    try:
        size = float(number) * MEMORY_UNITS[value[len(number):]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"bad memory size '{text}'; e.g. 512MB or 2GB")
    if not math.isfinite(size):
        raise argparse.ArgumentTypeError(f"memory size must be finite, got '{text}'")
    if size <= 0:
        raise argparse.ArgumentTypeError(f"memory size must be positive, got '{text}'")
    return int(size)


def plan_memory(model: ImplicitDecoder, size: Tuple[int, int], budget: float, chunk_size: int,
                costs: Costs, bands: bool = True, strict: bool = True) -> Plan:
    """The plan that fits `budget` bytes for an (h, w) input (after any window padding),
    keeping the whole-image path whenever it fits, so small images run as before.

    Args:
        size: (h, w) of the input the encoder sees.
        budget: bytes for the encoder's and decoder's working memory (not counting the input
            and output images the caller holds).
        chunk_size: the most queries per call the caller wants.
        bands: whether the decoder may hold the latent grid in bands of rows (renderers);
            False (evaluation) keeps the whole grid and tiles only the encoder.
        strict: refuse a budget too small for the smallest tiles (a budget the user gave);
            otherwise (a default budget) take the smallest tiles.

    Raises:
        ValueError: a budget that is not a positive number, or (strict) too small.
    """
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise ValueError(f"memory budget must be a positive number of bytes, got {budget}")
    h, w = size
    queries = max(1, min(chunk_size, int(budget / 4 / costs.per_query)))
    decode = queries * costs.per_query
    grid = (costs.code + costs.feature_per_code) * h * w
    whole = costs.encoder_per_pixel * h * w + grid
    if whole + decode <= budget:
        return Plan(None, None, queries, int(whole + decode))
    encoder = getattr(model, 'encoder', None)
    halo, align = tiling_geometry(encoder) if encoder is not None else (0, 1)
    grid_rows = not bands or model.whole_grid  # SRNO streams over the whole latent grid
    reach = model.code_reach
    sides = sorted({max(align, s - s % align) for s in TILE_SIDES if s < 2 * max(h, w)})

    def need(rows: int, cols: int, segment: int) -> float:
        enc = costs.encoder_per_pixel * min(rows + 2 * halo, h) * min(cols + 2 * halo, w)
        if grid_rows:
            return enc + grid + decode
        # two blocks of code rows, a segment's codes and features (see inference.bands)
        held = 2 * rows * w * costs.code + \
            (segment + 2 * reach) * w * (costs.code + costs.feature_per_code)
        return enc + held + decode

    def overhead(rows: int, cols: int, segment: int) -> float:
        """Work beyond the whole-image run: halos re-encoded, segment margins re-projected."""
        enc = (min(rows + 2 * halo, h) / min(rows, h)) * (min(cols + 2 * halo, w) / min(cols, w))
        return enc + (0 if grid_rows else 0.25 * (segment + 2 * reach) / segment)

    options = [(overhead(r, c, g), r, c, g) for r in sides for c in sides
               for g in ([None] if grid_rows else [x for x in sides if x <= r])]
    fitting = [o for o in options if need(*o[1:]) <= budget]
    if not fitting:
        if strict:
            least = min(options, key=lambda o: need(*o[1:]))
            raise ValueError(f"a memory budget of {format_bytes(budget)} is too small for "
                             f"this model on a {h}x{w} input: it needs at least "
                             f"{format_bytes(need(*least[1:]))}")
        fitting = [min(options, key=lambda o: need(*o[1:]))]
    _, rows, cols, segment = min(fitting)
    return Plan((rows, cols), segment, queries, int(need(rows, cols, segment)))


def plan_for(model: ImplicitDecoder, size: Tuple[int, int], budget: float, chunk_size: int,
             impl: str = 'fast', precision: str = 'fp32', device: Optional[torch.device] = None,
             bands: bool = True, strict: bool = True) -> Plan:
    """plan_memory, measuring the model's costs only when the image may not fit whole: an
    image under budget / SURE_FIT_BYTES_PER_PIXEL pixels runs whole without a probe."""
    h, w = size
    if (h * w + chunk_size) * SURE_FIT_BYTES_PER_PIXEL <= budget:
        return Plan(None, None, chunk_size, 0)
    return plan_memory(model, size, budget, chunk_size,
                       measure_costs(model, impl, precision, device), bands, strict)


def describe(plan: Plan) -> str:
    """One line: how the plan runs the model."""
    if plan.encoder_tile is None:
        return f'whole image, {plan.chunk_size} queries per call'
    grid = 'whole latent grid' if plan.band_rows is None else \
        f'decoder features in bands of {plan.band_rows} code rows'
    rows, cols = plan.encoder_tile
    return (f'encoder tiles of {rows}x{cols} codes, {grid}, {plan.chunk_size} queries per '
            f'call (about {format_bytes(plan.estimate)})')
