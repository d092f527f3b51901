"""torch.compile for decoders: one compiled function serves every call of a render."""
import logging
import time
from typing import Optional

import torch

logger = logging.getLogger(__name__)


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
