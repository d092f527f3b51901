"""The interface every arbitrary-scale model implements: LIIF, MetaSR, LTE, lte-fast, SRNO,
LM-LIIF, LM-LTE and bicubic. Scripts and `inference/` see models only through it.

Our API works on flat queries for every model:
  encode(inp (B, 3, h, w)) -> feat (whatever the model keeps per image)
  query(feat, coord (B, Q, 2), cell (B, Q, 2) or None) -> (B, Q, 3)   the reference path
  decoder(feat, impl) -> a function (coord, cell) -> (B, Q, 3)         reference or fast path
  query_stream(feat, chunks, impl)  the chunks of one set of queries, one at a time (SRNO)
  cmsr_decoder(feat, tables, impl)  LMF's multi-scale rendering (LM-LIIF, LM-LTE only)
  cmsr_bands(feat, tables, size, rows, impl)  the same, of a whole output grid in bands

The official call signatures are kept beside it (`forward`, `gen_feat`/`query_rgb`): flat
(B, Q, 2) queries with (B, Q, 2) cells for liif, lte, metasr; the (B, H, W, 2) grid with a (B, 2)
cell, giving (B, 3, H, W), for the models whose official code takes grids (lte-fast, sronet).
"""
from functools import partial
from typing import Callable, Iterable, Iterator, Optional, Tuple

import torch
from torch import nn

from utils.coords import flat_to_grid, grid_to_flat

IMPLS = ('fast', 'reference')
Decoder = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def decode_in_chunks(decode: Decoder, coord: torch.Tensor, cell: Optional[torch.Tensor],
                     chunk_size: Optional[int]) -> torch.Tensor:
    """`decode` over slices of at most `chunk_size` queries (all at once if None).

    Args:
        decode: (B, q, 2), (B, q, 2) -> (B, q, 3), from `model.decoder(feat, impl)`.
        coord, cell: (B, Q, 2).

    Returns:
        (B, Q, 3). For a model whose queries are independent this equals one big call; for a
        whole_grid model (SRNO) each chunk is decoded as a grid of its own.
    """
    n = coord.shape[1]
    if n == 0:
        return decode(coord, cell)
    step = n if chunk_size is None else chunk_size
    preds = [decode(coord[:, i:i + step], None if cell is None else cell[:, i:i + step])
             for i in range(0, n, step)]
    return preds[0] if len(preds) == 1 else torch.cat(preds, dim=1)


def check_queries(coord, cell, batch: Optional[int] = None) -> None:
    """ValueError unless coord is (B, Q, 2) floating point and cell None or the same shape,
    B the features' batch when known: the one check of the decoder interface's inputs."""
    if not torch.is_tensor(coord) or coord.dim() != 3 or coord.shape[-1] != 2 or \
            not coord.is_floating_point():
        what = tuple(coord.shape) if torch.is_tensor(coord) else type(coord).__name__
        raise ValueError(f"coord must be a (B, Q, 2) floating-point tensor of (row, col) "
                         f"coordinates in (-1, 1), got {what}")
    if cell is not None and (not torch.is_tensor(cell) or cell.shape != coord.shape):
        what = tuple(cell.shape) if torch.is_tensor(cell) else type(cell).__name__
        raise ValueError(f"cell must be a (B, Q, 2) tensor like coord {tuple(coord.shape)}, "
                         f"got {what}")
    if batch is not None and coord.shape[0] != batch:
        raise ValueError(f"coord holds the queries of {coord.shape[0]} images, the features "
                         f"are of {batch}: coord must be (B, Q, 2) with B = {batch}")


def first_feature(feat):
    """The first tensor of a model's features (a tensor or a tuple of tensors)."""
    return feat[0] if isinstance(feat, tuple) and feat else feat


def feature_batch(feat) -> Optional[int]:
    """The batch size of a model's features, if any."""
    first = first_feature(feat)
    return first.shape[0] if torch.is_tensor(first) and first.dim() > 0 else None


def check_impl(impl: str) -> None:
    """ValueError unless `impl` names a query path."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl '{impl}'; expected one of {', '.join(IMPLS)}")


class ImplicitDecoder(nn.Module):
    """Base class of the models that decode RGB at continuous coordinates.

    Class attributes a model sets:
        grid_queries: the official code takes a (B, H, W, 2) grid and a (B, 2) cell and returns
            (B, 3, H, W); `forward` and `query_rgb` accept that form too.
        separable_features: the features of a region depend only on the input near it, so
            the encoder can run in tiles and bands decode from segments of the latent grid.
            CiaoSR's non-local branch sees the whole image: an image too large to run whole
            is rendered with its tiled test (inference.tiled_test), each tile an image.
        own_data_norm: the normalisation every official config of the model uses, which its
            checkpoints imply (CiaoSR's x - the DIV2K mean); test.py then uses the
            checkpoint's, not a test config's (LIIF's test configs all say (x - 0.5) / 0.5).
        whole_grid: queries are not independent (SRNO's attention runs over all the queries
            decoded together), so the output depends on how queries are grouped. Renderers
            decode the whole grid in one call for such a model, unless a protocol asks for
            chunks (SRNO's official row-chunked evaluation).
        fast_chunk_size: queries per call at which the fast path runs best (its activations
            stay in cache); `inference` decodes in chunks no larger than this.
        supports_cmsr: the model has LMF's modulations and can decode with CMSR
            (`cmsr_decoder`, models.cmsr).
        code_reach: how many latent-code rows (and columns) beyond the two nearest to a query
            its decoding may read, features computed from the codes included (LIIF: ensemble
            and 3x3 unfolding, 2; LTE: ensemble and its 3x3 coef/freq convolutions, 2), plus
            one spare. Renderers that hold the latent grid in bands of rows (inference.bands)
            give each band this many more rows.
    """
    grid_queries: bool = False
    whole_grid: bool = False
    separable_features: bool = True
    own_data_norm: Optional[dict] = None
    supports_cmsr: bool = False
    fast_chunk_size: Optional[int] = None
    code_reach: int = 3

    @property
    def encoder_window(self) -> int:
        """The attention window of the model's encoder (SwinIR), 0 for convolutional ones: a
        renderer pads inputs to it (LTE's window protocol, inference.window)."""
        return getattr(getattr(self, 'encoder', None), 'window_size', None) or 0

    def encode(self, inp: torch.Tensor):
        """(B, 3, h, w) normalised image -> the model's per-image features."""
        return self.from_codes(inp, self.encoder(inp))

    def from_codes(self, inp: torch.Tensor, codes: torch.Tensor):
        """The per-image features from the input and its latent codes `self.encoder(inp)`
        (which inference.tiling can compute in tiles); the codes themselves by default."""
        return codes

    def query(self, feat, coord: torch.Tensor, cell: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
        """Reference path: (B, Q, 2) coords, (B, Q, 2) cells -> (B, Q, 3) normalised RGB."""
        raise TypeError(f"{type(self).__name__} does not implement query()")

    @property
    def supports_fast(self) -> bool:
        """Whether `decoder(feat, 'fast')` has a path of its own (else it is the reference)."""
        return False

    @property
    def exact_bands(self) -> bool:
        """Whether the fast path decodes a band of the latent grid in the whole grid's frame
        (`decoder(feat, 'fast', rows=...)`), bit for bit as from the whole grid."""
        return False

    def fast_decoder(self, feat, rows: Optional[Tuple[int, int]] = None) -> Decoder:
        """The fast path: work done once per image here, a per-query function returned."""
        raise TypeError(f"{type(self).__name__} has no fast path")

    def check_feat(self, feat) -> None:
        """ValueError if `feat` cannot be this model's features (a model's own check)."""

    def decoder(self, feat, impl: str = 'reference', rows: Optional[Tuple[int, int]] = None
                ) -> Decoder:
        """(coord, cell) -> (B, Q, 3) with the reference or, where the model has one, the
        fast path. The one place where the path is chosen, and where the inputs are checked
        (check_queries; zero queries give a (B, 0, 3) result).

        rows: (first row, rows of the whole grid) when `feat` holds a band of a larger latent
            grid whose queries stay in the whole grid's frame (fast paths with exact_bands).
        """
        check_impl(impl)
        self.check_feat(feat)
        fast = impl == 'fast' and self.supports_fast
        if rows is not None and not (fast and self.exact_bands):
            raise ValueError(f"the {impl} path of {type(self).__name__} decodes bands in their "
                             "own frame (inference.bands.sub_grid_queries), not with rows")
        decode = self.fast_decoder(feat, rows) if fast else partial(self.query, feat)
        batch = feature_batch(feat)

        def checked(coord: torch.Tensor, cell: Optional[torch.Tensor]) -> torch.Tensor:
            check_queries(coord, cell, batch)
            if coord.shape[1] == 0:
                return coord.new_zeros(coord.shape[0], 0, 3)
            return decode(coord, cell)
        return checked

    def cmsr_decoder(self, feat, tables, impl: str = 'fast', chunk_size: Optional[int] = None
                     ) -> Decoder:
        """(coord, cell) -> (B, Q, 3) with CMSR; only LMF models have it."""
        raise ValueError(f"CMSR needs an LMF model (lmliif, lmlte); {type(self).__name__} has "
                         "no modulations to choose decoding scales from")

    def cmsr_bands(self, feat, tables, size: Tuple[int, int], rows: int, impl: str = 'fast',
                   chunk_size: Optional[int] = None) -> Iterator[torch.Tensor]:
        """The whole (H, W) output grid with CMSR in bands of `rows` rows; LMF models only."""
        return self.cmsr_decoder(feat, tables, impl, chunk_size)

    def query_stream(self, feat, chunks: Callable[[], Iterable[Tuple[torch.Tensor, Optional[
            torch.Tensor]]]], impl: str = 'reference', chunk_size: Optional[int] = None
                     ) -> Iterator[torch.Tensor]:
        """Decodes the queries of all the chunks as one set of queries, one chunk at a time.

        Args:
            feat: from `encode`.
            chunks: called (once here, more for whole_grid models) to iterate over the
                (coord (B, q, 2), cell (B, q, 2)) chunks, the same ones each time.
            impl: 'reference' or 'fast'.
            chunk_size: queries per call within a chunk (independent queries only).

        Yields:
            (B, q, 3) per chunk: what one call on all the queries would give. Queries are
            independent here; a whole_grid model overrides this with passes over the chunks.
        """
        decode = self.decoder(feat, impl)
        for coord, cell in chunks():
            yield decode_in_chunks(decode, coord, cell, chunk_size)

    def forward(self, inp: torch.Tensor, coord: torch.Tensor,
                cell: Optional[torch.Tensor] = None, impl: str = 'reference') -> torch.Tensor:
        """Official signature: (B, 3, h, w), (B, Q, 2), (B, Q, 2) -> (B, Q, 3), or for a
        grid_queries model (B, 3, h, w), (B, H, W, 2), (B, 2) -> (B, 3, H, W)."""
        return self._official_query(self.encode(inp), coord, cell, impl)

    def _official_query(self, feat, coord: torch.Tensor, cell: Optional[torch.Tensor],
                        impl: str = 'reference') -> torch.Tensor:
        decode = self.decoder(feat, impl)
        if coord.dim() == 4:
            if not self.grid_queries:
                raise ValueError(f"{type(self).__name__} takes flat (B, Q, 2) queries, got a "
                                 f"{tuple(coord.shape)} grid")
            H, W = coord.shape[1:3]
            flat_coord, flat_cell = grid_to_flat(coord, cell)
            return flat_to_grid(decode(flat_coord, flat_cell), H, W)
        return decode(coord, cell)

    # Official two-step API, kept for code written against the official repos. It is the only
    # place a model holds a tensor between calls.
    def gen_feat(self, inp: torch.Tensor):
        self.feat = self.encode(inp)
        return self.feat

    def query_rgb(self, coord: torch.Tensor, cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._official_query(self.feat, coord, cell)
