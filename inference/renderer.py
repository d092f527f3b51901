"""The renderer: one place that runs a model over queries, for demo.py, test.py, training-time
validation and the viewer.

It owns every step between an image in [0, 1] and the model's RGB in [0, 1]: normalise as the
model was trained (data_norm) -> mirror-pad (LTE's window protocol) -> encode, whole or in tiles
(inference.tiling) -> choose the query path -> autocast to the precision -> decode in chunks
(the device's chunk policy, inference.chunks) -> de-normalise and clamp. A Scene is one image
ready to decode at any queries (evaluation, the viewer's tiles); `bands` renders a whole
output grid in bands of rows with bounded memory (demo.py; inference.bands).
"""
import logging
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch

from models import ImplicitDecoder
from models.cmsr import check_tables
from models.decoder import check_impl, decode_in_chunks
from utils.coords import make_coord
from utils.devices import autocast, check_precision
from .bands import decode_bands
from .chunks import CompiledDecoder, check_chunk_size, chunk_policy
from .memory import Costs, Plan, default_budget, measure_costs, plan_for
from .normalization import OFFICIAL_NORM, normalisers
from .tiling import encode
from .window import pad_to_window, padded_size, to_padded_domain

logger = logging.getLogger(__name__)

# Output pixels per band when the decoder's own chunks are smaller (the fast path on a CPU):
# a band is a unit of the output's memory and of progress, not of decoder work.
BAND_QUERIES = 65536


@dataclass(frozen=True)
class RenderOptions:
    """How to run a model. Defaults: the fast path in float32, the device's chunk policy, the
    whole image when it fits the default memory budget.

    impl: 'fast' or 'reference' query path.
    precision: 'fp32', or 'bf16'/'fp16' autocast around the decoder (the encoder, and the
        features made from its codes, stay float32).
    chunk_size: the most queries per decoder call (and, in `bands`, output pixels per band);
        None: the chunk policy of the device (inference.chunks). Never changes the output of
        a model with independent queries.
    window: LTE's SwinIR protocol, mirror-pad inputs to a multiple of this (0: off).
    encoder_tile: encode in tiles of (rows, columns) codes, or N for N x N (the same codes);
        None: band_rows x band_rows if band_rows is given, else as max_memory decides.
    band_rows: hold the latent codes in bands of this many rows in `bands` (inference.bands;
        not for whole_grid models); None: the whole latent grid.
    max_memory: bytes of working memory for the model on its device, a limit (ValueError if
        too small); None: inference.memory's default budget, as a guide.
    compile: run the decoder under torch.compile in chunks of one static shape
        (inference.chunks.CompiledDecoder; compiled once per image size, falls back with a
        warning where it cannot compile). Not for whole_grid models.
    cmsr: LMF's CMSR scale-to-mean tables ({target scale: {decode scale: threshold}}, see
        models.cmsr and inference.cmsr.load_tables), or None. Beyond the training scales an
        LMF model then renders the whole output grid at once (CMSR's levels are whole
        images): `bands` renders it whole and yields it in bands, `Scene.decode` takes the
        whole grid (row-major) in one call. Not with compile or window.
    """
    impl: str = 'fast'
    precision: str = 'fp32'
    chunk_size: Optional[int] = None
    window: int = 0
    encoder_tile: Optional[Union[int, Tuple[int, int]]] = None
    band_rows: Optional[int] = None
    max_memory: Optional[float] = None
    compile: bool = False
    cmsr: Optional[Dict[float, Dict[float, float]]] = None

    def __post_init__(self):
        if isinstance(self.encoder_tile, int):
            object.__setattr__(self, 'encoder_tile', (self.encoder_tile, self.encoder_tile))
        check_impl(self.impl)
        check_precision(self.precision)
        check_chunk_size(self.chunk_size)
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.encoder_tile is not None and min(self.encoder_tile) < 1:
            raise ValueError(f"encoder tiles must be >= 1 code a side, got {self.encoder_tile}")
        if self.band_rows is not None and self.band_rows < 1:
            raise ValueError(f"band_rows must be >= 1, got {self.band_rows}")
        if self.cmsr is not None:
            check_tables(self.cmsr, 'CMSR tables')
            if self.compile or self.window:
                raise ValueError("CMSR renders whole images at several scales: it does not run "
                                 "with compile or with window padding")


def band_coords(H: int, W: int, row0: int, row1: int, device: torch.device) -> torch.Tensor:
    """Coordinates of output rows [row0, row1) of an H x W grid, (1, (row1 - row0) * W, 2).

    Equal to make_coord((H, W))[row0 * W:row1 * W] without building the whole grid.
    """
    rows = make_coord((H,), device=device)[row0:row1, 0]
    cols = make_coord((W,), device=device)[:, 0]
    return torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(1, -1, 2)


class Scene:
    """One image ready to decode: its features made once, decoded at any queries.

    Made by Renderer.scene; `decode` may be called any number of times (not concurrently).
    Independent queries are decoded in calls of `chunk_size` (the renderer's policy), by
    `decode_fn` (compiled when the options say so).
    """

    def __init__(self, renderer: 'Renderer', decode_fn, chunk_size: Optional[int],
                 gt_norm: Tuple[torch.Tensor, ...], size: Tuple[int, int],
                 padded: Optional[Tuple[int, int]], device: torch.device):
        self.renderer = renderer
        self.decode_fn = decode_fn
        self.chunk_size = chunk_size
        self.gt_norm = gt_norm
        self.size = size
        self.padded = padded
        self.device = device

    @torch.no_grad()
    def decode(self, coord: torch.Tensor, cell: Optional[torch.Tensor],
               chunk_size: Optional[int] = None) -> torch.Tensor:
        """RGB at the queries, de-normalised and clamped to [0, 1] (not quantised).

        Args:
            coord, cell: (B, Q, 2) queries in the image's (-1, 1) frame, (row, col); cells
                (2/H, 2/W) of the output grid.
            chunk_size: for a whole_grid model (SRNO), the protocol's queries per call (None:
                all at once); ignored for independent queries (the renderer's chunks).

        Returns:
            (B, Q, 3) float32 on the model's device; NaN stays NaN (callers check).
        """
        renderer = self.renderer
        if self.padded is not None:
            coord, cell = to_padded_domain(coord, cell, self.size, self.padded)
        chunk = chunk_size if renderer.model.whole_grid else self.chunk_size
        if renderer.options.cmsr is not None:
            chunk = None  # the CMSR decoder chunks within; it needs the whole grid
        with autocast(self.device, renderer.options.precision):
            pred = decode_in_chunks(self.decode_fn, coord, cell, chunk)
        return renderer.to_image(pred, self.gt_norm)


class Renderer:
    """A model, its data normalisation and the options to run it with.

    Args:
        model: any models.ImplicitDecoder, in eval mode on its device.
        data_norm: the config's data_norm the model was trained with (None: identity); see
            inference.normalization.norm_of_checkpoint for a checkpoint's.
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

    # --- the policy: budget, chunks, memory plan ---

    def budget(self, device: torch.device) -> float:
        return self.options.max_memory or default_budget(device)

    def costs(self, device: torch.device) -> Costs:
        """The model's measured memory costs (inference.memory), measured once."""
        if self._costs is None:
            self._costs = measure_costs(self.model, self.options.impl, self.options.precision,
                                        device)
        return self._costs

    def chunk_size(self, device: torch.device) -> Optional[int]:
        """Queries per decoder call: the device's chunk policy, capped by options.chunk_size
        (a whole_grid model: options.chunk_size itself, None for the whole grid)."""
        model, requested = self.model, self.options.chunk_size
        if model.whole_grid:
            return requested
        if device.type == 'cpu':
            chunk = chunk_policy(model, self.options.impl, device)
        else:
            chunk = chunk_policy(model, self.options.impl, device,
                                 self.costs(device).per_query, self.budget(device))
        return chunk if requested is None else min(chunk, requested)

    def plan(self, size: Tuple[int, int], bands: bool, device: torch.device) -> Plan:
        """Encoder tiles (and, for `bands`, latent bands) for an (h, w) input as the encoder
        sees it: the options' tiles, or what fits the budget (inference.memory)."""
        opts = self.options
        chunk = self.chunk_size(device) or size[0] * size[1]
        if opts.encoder_tile is not None or opts.band_rows is not None:
            band_rows = opts.band_rows if bands and not self.model.whole_grid else None
            return Plan(opts.encoder_tile or (opts.band_rows,) * 2, band_rows, chunk, 0)
        return plan_for(self.model, size, self.budget(device), chunk, opts.impl,
                        opts.precision, device, bands=bands, strict=opts.max_memory is not None)

    def wrap(self, decode, chunk: Optional[int]):
        """The decoder function as the options run it: compiled for chunks of `chunk`
        queries when options.compile."""
        if not self.options.compile or chunk is None:
            return decode
        return CompiledDecoder(decode, chunk)

    def padded_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """(h, w) of an input after the window padding of the options."""
        window = self.options.window
        return padded_size(*size, window) if window else size

    # --- the pipeline ---

    def normalise(self, image: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """(B, 3, h, w) image in [0, 1] -> (the model's input, padded to the window; the
        (gt_sub, gt_div) that `to_image` de-normalises with, on the image's device)."""
        inp_sub, inp_div, gt_sub, gt_div = normalisers(self.data_norm, image.device)
        inp = (image - inp_sub) / inp_div
        inp = pad_to_window(inp, self.options.window) if self.options.window else inp
        return inp, (gt_sub, gt_div)

    @staticmethod
    def to_image(pred: torch.Tensor, gt_norm: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(B, Q, 3) model output -> float32 RGB in [0, 1], clamped (NaN kept)."""
        gt_sub, gt_div = gt_norm
        return (pred.float() * gt_div + gt_sub).clamp_(0, 1)

    @torch.no_grad()
    def scene(self, image: torch.Tensor) -> Scene:
        """Encodes a (B, 3, h, w) image in [0, 1] (on the model's device) once, the latent
        grid whole (the encoder in tiles when the options or the budget say so)."""
        size = tuple(image.shape[-2:])
        inp, gt_norm = self.normalise(image)
        padded = tuple(inp.shape[-2:]) if self.options.window else None
        tile = self.plan(tuple(inp.shape[-2:]), False, image.device).encoder_tile
        feat = encode(self.model, inp, tile)  # float32 always: see utils.devices.autocast
        chunk = self.chunk_size(image.device)
        if self.options.cmsr is not None:
            decode = self.model.cmsr_decoder(feat, self.options.cmsr, self.options.impl, chunk)
        else:
            decode = self.model.decoder(feat, self.options.impl)
            if not self.model.whole_grid:
                decode = self.wrap(decode, chunk)
        return Scene(self, decode, chunk, gt_norm, size, padded, image.device)

    @torch.no_grad()
    def bands(self, image: torch.Tensor, size: Tuple[int, int], plan: Optional[Plan] = None
              ) -> Iterator[Tuple[int, torch.Tensor]]:
        """Renders the continuous image of `image` at `size`, one band of whole rows at a time,
        so that neither the coordinate grid nor the output ever exists whole. A whole_grid
        model (SRNO) streams over the bands in passes (models.ImplicitDecoder.query_stream)
        and gives its whole-grid output.

        Args:
            image: (1, 3, h, w) in [0, 1] on the model's device.
            size: output (H, W); the per-axis scales H/h and W/w may differ.
            plan: from `plan(padded size, True, device)` (None: made here).

        Yields:
            (first row, (rows, W, 3) float32 CPU tensor in [0, 1], clamped, not quantised).
        """
        H, W = size
        h, w = image.shape[-2:]
        inp, gt_norm = self.normalise(image)
        padded = tuple(inp.shape[-2:]) if self.options.window else None
        plan = plan or self.plan(tuple(inp.shape[-2:]), True, image.device)
        model, impl = self.model, self.options.impl
        chunk = self.chunk_size(inp.device)
        band = self.options.chunk_size or max(chunk or 0, BAND_QUERIES)
        rows_per_band = max(1, band // W)
        starts = range(0, H, rows_per_band)
        cell_value = torch.tensor([2 / H, 2 / W], device=inp.device)

        def queries():
            for row0 in starts:
                coord = band_coords(H, W, row0, min(H, row0 + rows_per_band), inp.device)
                cell = cell_value.expand_as(coord)
                if padded is not None:
                    coord, cell = to_padded_domain(coord, cell, (h, w), padded)
                yield coord, cell

        if self.options.cmsr is not None:
            stream = self.cmsr_bands(inp, (H, W), plan, chunk, rows_per_band)
        elif model.whole_grid:
            logger.info('%s attends over all queries: it streams over the bands in passes',
                        type(model).__name__)
            stream = model.query_stream(encode(model, inp, plan.encoder_tile), queries, impl,
                                        chunk)
        elif plan.band_rows:
            tile = plan.encoder_tile or (plan.band_rows, plan.band_rows)
            stream = decode_bands(model, inp, queries(), plan.band_rows, tile, impl, chunk,
                                  lambda decode: self.wrap(decode, chunk))
        else:
            decode = self.wrap(model.decoder(encode(model, inp, plan.encoder_tile), impl), chunk)
            stream = (decode_in_chunks(decode, coord, cell, chunk) for coord, cell in queries())
        for row0 in starts:
            with autocast(inp.device, self.options.precision):  # the decoding only
                pred = next(stream)
            rows = min(H, row0 + rows_per_band) - row0
            yield row0, self.to_image(pred, gt_norm).view(rows, W, 3).cpu()

    def cmsr_bands(self, inp: torch.Tensor, size: Tuple[int, int], plan: Plan,
                   chunk: Optional[int], rows_per_band: int) -> Iterator[torch.Tensor]:
        """The whole (1, H*W, 3) output with CMSR, then its bands of rows_per_band rows."""
        H, W = size
        coord = make_coord((H, W), device=inp.device).unsqueeze(0)
        cell = torch.tensor([2 / H, 2 / W], device=inp.device).expand_as(coord)
        feat = encode(self.model, inp, plan.encoder_tile)
        with autocast(inp.device, self.options.precision):
            pred = self.model.cmsr_decoder(feat, self.options.cmsr, self.options.impl,
                                           chunk)(coord, cell)
        for row0 in range(0, H, rows_per_band):
            yield pred[:, row0 * W:min(H, row0 + rows_per_band) * W]


def render_bands(model: ImplicitDecoder, image: torch.Tensor, size: Tuple[int, int],
                 options: RenderOptions = RenderOptions(),
                 data_norm: Optional[Dict[str, Any]] = OFFICIAL_NORM
                 ) -> Iterator[Tuple[int, torch.Tensor]]:
    """Renderer(model, data_norm, options).bands(image, size): (row0, band) pairs; the
    official configs' normalisation unless data_norm says otherwise."""
    return Renderer(model, data_norm, options).bands(image, size)
