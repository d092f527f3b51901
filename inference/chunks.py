"""How many queries to decode per call: the chunk policy, per device and query path.

A CPU runs the fast path best in chunks small enough for its activations to stay in cache
(the model's `fast_chunk_size`, 4096 queries for LIIF and LTE), and the reference path in the
official chunks of 30000 (LIIF's eval_bsize and batched_predict). A GPU runs best in the
largest chunks it can hold: each call is a few dozen kernel launches, which small chunks turn
into most of the time (4096-query chunks made the fast path 4x slower than the reference on an
H200). There the chunk is what the memory budget allows, from the model's measured bytes per
query (inference.memory), up to GPU_MAX_CHUNK.

Chunking never changes the output of a model whose queries are independent; a whole_grid model
(SRNO) attends over the queries decoded together, so its chunks are the protocol's, never the
policy's.
"""
import logging
import time
from typing import Optional

import torch

from models import ImplicitDecoder
from models.decoder import decode_in_chunks

logger = logging.getLogger(__name__)

CPU_REFERENCE_CHUNK = 30000
# Beyond this a GPU is saturated (each layer a 1M x 256 x 256 product, the 4 ensemble members
# of 262144 queries) while memory keeps growing: LIIF's fast path needs about 4.2 KB per query
# in fp32 (measured), 1.1 GB per call here, which keeps a 1080p -> 8K render near 3 GB.
GPU_MAX_CHUNK = 1 << 18
# The share of the budget one decoder call may take (the rest: features, output, encoder).
CALL_SHARE = 4


def check_chunk_size(chunk_size: Optional[int]) -> None:
    """ValueError unless chunk_size is None or a positive integer."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"query chunk size must be an integer >= 1, got {chunk_size!r}")


def chunk_policy(model: ImplicitDecoder, impl: str, device: torch.device,
                 per_query_bytes: Optional[float] = None, budget: Optional[float] = None
                 ) -> Optional[int]:
    """Queries per decoder call for `model` on `device`, or None for a whole_grid model
    (whose chunks only a protocol may set).

    Args:
        impl: 'fast' or 'reference'.
        per_query_bytes, budget: on a GPU, the measured bytes a query needs in one call
            (inference.memory.measure_costs) and the memory budget: the chunk is the largest
            within budget / CALL_SHARE, at most GPU_MAX_CHUNK. Not used on a CPU.
    """
    if model.whole_grid:
        return None
    fast = impl == 'fast' and model.supports_fast
    if device.type == 'cpu':
        return (model.fast_chunk_size or CPU_REFERENCE_CHUNK) if fast else CPU_REFERENCE_CHUNK
    if per_query_bytes is None or budget is None:
        raise ValueError("the chunk policy of a GPU needs the bytes per query and the budget")
    return int(max(1, min(GPU_MAX_CHUNK, budget / CALL_SHARE / max(per_query_bytes, 1.0))))


def predict(model: ImplicitDecoder, feat, coord: torch.Tensor, cell: Optional[torch.Tensor],
            chunk_size: Optional[int] = None, impl: str = 'fast') -> torch.Tensor:
    """Decodes queries from a model's features with the chosen path, in chunks.

    Args:
        model: any `models.ImplicitDecoder`.
        feat: `model.encode(inp)`.
        coord, cell: (B, Q, 2) flat queries, (row, col) in (-1, 1), cells (2/H, 2/W).
        chunk_size: queries per call; None decodes all at once (whole_grid models: pass None
            unless a protocol asks for chunks, since chunks change their output).
        impl: 'fast' (the model's fast path where it has one) or 'reference'.

    Returns:
        (B, Q, 3), normalised like the model's training targets.
    """
    check_chunk_size(chunk_size)
    return decode_in_chunks(model.decoder(feat, impl), coord, cell, chunk_size)


class CompiledDecoder:
    """A decoder function under torch.compile, fed chunks of few static shapes: a call with
    fewer queries than `chunk_size` is padded (its last query repeated; the padding's output
    dropped, queries being independent) to `chunk_size`, or to the next power of two when
    that is smaller, so that one or a few compilations serve every call (full chunks, the
    last one, a viewer's edge tiles). Compiled code is cached per shape by torch (and across
    processes by its inductor cache); the first call's compile time is kept in
    `compile_seconds`.

    If compiling fails (no C++ compiler for the CPU backend, no Triton for CUDA), a warning
    says why once and the function runs uncompiled.
    """

    def __init__(self, decode, chunk_size: int):
        self.decode = decode
        self.chunk_size = chunk_size
        self.compiled = torch.compile(decode, dynamic=False)
        self.compile_seconds: Optional[float] = None

    def __call__(self, coord: torch.Tensor, cell: Optional[torch.Tensor]) -> torch.Tensor:
        n = coord.shape[1]
        if n > self.chunk_size:
            raise ValueError(f"{n} queries in one call of a decoder compiled for "
                             f"{self.chunk_size}")
        padded = min(self.chunk_size, 1 << max(0, n - 1).bit_length())
        if n < padded:
            coord = _pad_queries(coord, padded)
            cell = None if cell is None else _pad_queries(cell, padded)
        if self.compiled is None:
            return self.decode(coord, cell)[:, :n]
        start = time.perf_counter()
        try:
            out = self.compiled(coord, cell)
        except Exception as e:  # torch raises many types from its compiler back ends
            logger.warning('torch.compile failed (%s: %s); decoding without it',
                           type(e).__name__, str(e).strip().splitlines()[0] if str(e) else '')
            self.compiled = None
            return self.decode(coord, cell)[:, :n]
        if self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - start
            logger.info('decoder compiled for chunks of %d queries in %.1f s',
                        self.chunk_size, self.compile_seconds)
        return out[:, :n]


def _pad_queries(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, q, 2) -> (B, n, 2), the last query repeated."""
    return torch.cat([x, x[:, -1:].expand(x.shape[0], n - x.shape[1], x.shape[2])], dim=1)
