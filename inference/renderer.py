"""The renderer: one place that runs a model over queries, for demo.py, test.py, training-time
validation and the viewer.

It owns every step between an image in [0, 1] and the model's RGB in [0, 1]: normalise as the
model was trained (data_norm) -> mirror-pad (LTE's window protocol) -> encode, whole or in tiles
(inference.tiling) -> choose the query path -> autocast to the precision -> decode in chunks
-> de-normalise and clamp, every size (tiles, latent bands, queries per call, output bands)
from one memory plan (inference.plan). A Scene is one image ready to decode at any queries
(evaluation, the viewer's tiles); `bands` renders a whole output grid in bands of rows with
bounded memory (demo.py; inference.bands).
"""
import logging
import math
import numbers
import time
from dataclasses import replace
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

from models import ImplicitDecoder
from models.decoder import Decoder, decode_in_chunks
from utils.coords import band_coords
from utils.devices import autocast
from utils.normalization import OFFICIAL_NORM, normalisers
from .bands import decode_bands
from .compile import CompiledDecoder
from .costs import Costs, measure_costs
from .tiled_test import tiled_bands
from .options import RenderOptions
from .plan import Plan, Progress, make_plan
from .tiling import encode_tiled
from .window import pad_to_window, padded_size, to_padded_domain

logger = logging.getLogger(__name__)
Norm = Tuple[torch.Tensor, torch.Tensor]


def encode(model: ImplicitDecoder, inp: torch.Tensor, tile: Optional[Tuple[int, int]] = None):
    """`model.encode(inp)`, its encoder run in tiles of `tile` codes when given (the same
    features; see inference.tiling)."""
    if tile is None:
        return model.encode(inp)
    return model.from_codes(inp, encode_tiled(model.encoder, inp, tile))


def to_image(pred: torch.Tensor, gt_norm: Norm, clamp: bool = True) -> torch.Tensor:
    """(B, Q, 3) model output -> float32 RGB, clamped to [0, 1] unless `clamp` is False (NaN
    kept)."""
    gt_sub, gt_div = gt_norm
    image = pred.float() * gt_div + gt_sub
    return image.clamp_(0, 1) if clamp else image


class Scene:
    """One image ready to decode: its features made once, decoded at any queries.

    Made by Renderer.scene; `decode` may be called any number of times (not concurrently).

    Args:
        decode_fn: the model's decoder function over the image's features (compiled when
            the options say so; CMSR's with options.cmsr).
        whole_grid: the model attends over all the queries decoded together (SRNO).
        chunk_size: queries per call for independent queries (the plan's).
        precision: the decoder's autocast precision.
        gt_norm: (gt_sub, gt_div) the output is de-normalised with.
        size, padded: the image's (h, w), and its size after the window padding (or None).
    """

    def __init__(self, decode_fn: Decoder, whole_grid: bool, chunk_size: Optional[int],
                 precision: str, gt_norm: Norm, size: Tuple[int, int],
                 padded: Optional[Tuple[int, int]], device: torch.device):
        self.decode_fn, self.whole_grid, self.chunk_size = decode_fn, whole_grid, chunk_size
        self.precision, self.gt_norm = precision, gt_norm
        self.size, self.padded, self.device = size, padded, device

    @torch.no_grad()
    def decode(self, coord: torch.Tensor, cell: Optional[torch.Tensor],
               chunk_size: Optional[int] = None, clamp: bool = True) -> torch.Tensor:
        """RGB at the queries, de-normalised and clamped to [0, 1] (not quantised).

        Args:
            coord, cell: (B, Q, 2) queries in the image's (-1, 1) frame, (row, col); cells
                (2/H, 2/W) of the output grid.
            chunk_size: for a whole_grid model (SRNO), the protocol's queries per call (None:
                all at once); ignored for independent queries (the plan's chunks).
            clamp: False keeps values outside [0, 1] (a self-ensemble clamps its mean).

        Returns:
            (B, Q, 3) float32 on the model's device; NaN stays NaN (callers check).
        """
        if self.padded is not None:
            coord, cell = to_padded_domain(coord, cell, self.size, self.padded)
        chunk = chunk_size if self.whole_grid else self.chunk_size
        with autocast(self.device, self.precision):
            pred = decode_in_chunks(self.decode_fn, coord, cell, chunk)
        return to_image(pred, self.gt_norm, clamp)


# An image in [0, 1] (or [-1, 1] for a model of identity data_norm) may overshoot a little
# (a bicubic resize); beyond these it is not one.
IMAGE_RANGE = (-2.0, 2.0)


def check_image(image: torch.Tensor) -> None:
    """ValueError unless `image` is a (B, 3, h, w) floating tensor of finite values within
    IMAGE_RANGE: an 8-bit image in 0..255 would render saturated without a word."""
    if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError(f"image: expected a (B, 3, h, w) float tensor, got {image.dtype} of "
                         f"shape {tuple(image.shape)}")
    lo, hi = (v.item() for v in torch.aminmax(image))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("image: holds NaN or infinite values")
    if lo < IMAGE_RANGE[0] or hi > IMAGE_RANGE[1]:
        raise ValueError(f"image: expected values in [0, 1], got {lo:g} to {hi:g}"
                         + (" (8-bit values? divide by 255)" if hi > 2 else ''))


class Renderer:
    """A model, its data normalisation and the options to run it with.

    Args:
        model: any models.ImplicitDecoder, in eval mode on its device.
        data_norm: the config's data_norm the model was trained with (None: identity); see
            utils.normalization.norm_of_checkpoint for a checkpoint's.
        options: RenderOptions.
    """

    def __init__(self, model: ImplicitDecoder, data_norm: Optional[Dict[str, Any]],
                 options: RenderOptions = RenderOptions()):
        self.model = model
        self.data_norm = data_norm
        self.options = options
        self._costs: Optional[Costs] = None

    def with_options(self, **changes) -> 'Renderer':
        """The same model and normalisation with some options changed."""
        return Renderer(self.model, self.data_norm, replace(self.options, **changes))

    def costs(self, device: torch.device) -> Costs:
        """The model's measured memory costs (inference.plan), measured once."""
        if self._costs is None:
            self._costs = measure_costs(self.model, self.options.impl, self.options.precision,
                                        device)
        return self._costs

    def plan(self, size: Tuple[int, int], device: torch.device,
             output: Optional[Tuple[int, int]] = None, held: int = 0) -> Plan:
        """The memory plan (inference.plan.make_plan) of an (h, w) image: rendered at `output`
        (H, W) in bands, or without an output as a scene (the latent grid whole); `held`:
        bytes the caller holds for the render."""
        window = self.options.window  # the encoder sees the input padded to it
        size = padded_size(*size, window) if window else size
        return make_plan(self.model, size, device, self.options,
                         lambda: self.costs(device), output, held)

    def normalise(self, image: torch.Tensor) -> Tuple[torch.Tensor, Norm]:
        """(B, 3, h, w) image in [0, 1] -> (the model's input, padded to the window; the
        (gt_sub, gt_div) that `to_image` de-normalises with, on the image's device)."""
        check_image(image)
        inp_sub, inp_div, gt_sub, gt_div = normalisers(self.data_norm, image.device)
        inp = (image - inp_sub).div_(inp_div)
        inp = pad_to_window(inp, self.options.window) if self.options.window else inp
        return inp, (gt_sub, gt_div)

    @torch.no_grad()
    def scene(self, image: torch.Tensor, plan: Optional[Plan] = None) -> Scene:
        """Encodes a (B, 3, h, w) image in [0, 1] (on the model's device) once, the latent
        grid whole, the encoder in tiles when the plan (made here if not given) says so."""
        model, opts = self.model, self.options
        size = tuple(image.shape[-2:])
        plan = plan or self.plan(size, image.device)
        inp, gt_norm = self.normalise(image)
        padded = tuple(inp.shape[-2:]) if opts.window else None
        feat = encode(model, inp, plan.encoder_tile)  # float32 always: see utils.devices
        if opts.cmsr is not None:  # the CMSR decoder chunks within; it needs the whole grid
            decode, chunk = model.cmsr_decoder(feat, opts.cmsr, opts.impl, plan.chunk_size), None
        else:
            decode, chunk = model.decoder(feat, opts.impl), plan.chunk_size
            if opts.compile and not model.whole_grid:
                decode = CompiledDecoder(decode, chunk)
        return Scene(decode, model.whole_grid, chunk, opts.precision, gt_norm, size, padded,
                     image.device)

    @torch.no_grad()
    def bands(self, image: torch.Tensor, size: Tuple[int, int], plan: Optional[Plan] = None,
              progress: Optional[Progress] = None) -> Iterator[Tuple[int, torch.Tensor]]:
        """Renders the continuous image of `image` at `size`, one band of whole rows at a time,
        so that neither the coordinate grid nor the output ever exists whole. A whole_grid
        model (SRNO) streams over the bands in passes (models.ImplicitDecoder.query_stream)
        and gives its whole-grid output.

        Args:
            image: (1, 3, h, w) in [0, 1] on the model's device.
            size: output (H, W); the per-axis scales H/h and W/w may differ.
            plan: from `plan((h, w), device, size)` (None: made here).
            progress: kept up to date as the bands are made (for an estimate of the time
                left), if given.

        Yields:
            (first row, (rows, W, 3) float32 CPU tensor in [0, 1], clamped, not quantised).
        """
        H, W = size
        if not all(isinstance(v, numbers.Integral) and v >= 1 for v in (H, W)):
            raise ValueError(f"bands: the output size must be two integers >= 1, got {size}")
        h, w = image.shape[-2:]
        plan = plan or self.plan((h, w), image.device, size)
        progress = progress or Progress()
        if plan.image_tiles is not None:
            yield from tiled_bands(self, image, size,
                                   plan.image_tiles, progress)
            return
        inp, gt_norm = self.normalise(image)
        padded = tuple(inp.shape[-2:]) if self.options.window else None
        starts = range(0, H, plan.output_rows)
        progress.output_rows_total = H
        progress.encoder_rows_total = inp.shape[-2]
        cell_value = torch.tensor([2 / H, 2 / W], device=inp.device)

        def queries():
            for row0 in starts:
                coord = band_coords(H, W, row0, min(H, row0 + plan.output_rows), inp.device)
                cell = cell_value.expand_as(coord)
                if padded is not None:
                    coord, cell = to_padded_domain(coord, cell, (h, w), padded)
                yield coord, cell

        stream = self._stream(inp, (H, W), plan, queries, progress)
        for row0 in starts:
            start, encoded = time.perf_counter(), progress.encoder_seconds
            with autocast(inp.device, self.options.precision):  # the decoding only
                pred = next(stream)
            rows = min(H, row0 + plan.output_rows) - row0
            band = to_image(pred, gt_norm).view(rows, W, 3).cpu()
            progress.bands += 1
            progress.output_rows += rows
            if progress.bands > 1:  # the first band pays for warm-up: not in the rate
                progress.rate_rows += rows
                progress.rate_seconds += time.perf_counter() - start - \
                    (progress.encoder_seconds - encoded)
            yield row0, band

    def _stream(self, inp: torch.Tensor, size: Tuple[int, int], plan: Plan, queries,
                progress: Progress) -> Iterator[torch.Tensor]:
        """The model's (1, q, 3) output for each band of `queries()`, as the plan runs it."""
        model, opts = self.model, self.options
        if plan.band_rows and not model.whole_grid and opts.cmsr is None:
            tile = plan.encoder_tile or tuple(inp.shape[-2:])  # None: one tile, the image
            return decode_bands(model, inp, queries(), plan.band_rows, tile, opts,
                                plan.chunk_size, progress)
        start = time.perf_counter()
        feat = encode(model, inp, plan.encoder_tile)
        progress.encoder_rows = progress.encoder_rows_total
        progress.encoder_seconds += time.perf_counter() - start
        if opts.cmsr is not None:
            return self._cmsr_bands(feat, inp, size, plan)
        if model.whole_grid:
            logger.info('%s attends over all queries: it streams over the bands in passes',
                        type(model).__name__)
            return model.query_stream(feat, queries, opts.impl, plan.chunk_size)
        decode = model.decoder(feat, opts.impl)
        if opts.compile:
            decode = CompiledDecoder(decode, plan.chunk_size)
        return (decode_in_chunks(decode, coord, cell, plan.chunk_size)
                for coord, cell in queries())

    def _cmsr_bands(self, feat, inp: torch.Tensor, size: Tuple[int, int], plan: Plan
                    ) -> Iterator[torch.Tensor]:
        """The (1, rows * W, 3) bands of the plan's rows with CMSR, each level's rows made as
        the bands need them."""
        return self.model.cmsr_bands(feat, self.options.cmsr, size, plan.output_rows,
                                     self.options.impl, plan.chunk_size)


def render_bands(model: ImplicitDecoder, image: torch.Tensor, size: Tuple[int, int],
                 options: RenderOptions = RenderOptions(),
                 data_norm: Optional[Dict[str, Any]] = OFFICIAL_NORM
                 ) -> Iterator[Tuple[int, torch.Tensor]]:
    """Renderer(model, data_norm, options).bands(image, size): (row0, band) pairs; the
    official configs' normalisation unless data_norm says otherwise."""
    return Renderer(model, data_norm, options).bands(image, size)
