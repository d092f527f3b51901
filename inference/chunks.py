"""Decoding queries in chunks, so that memory stays bounded whatever the number of queries."""
from typing import Optional

import torch

from models import ImplicitDecoder
from models.decoder import decode_in_chunks


def effective_chunk_size(model: ImplicitDecoder, chunk_size: Optional[int],
                         impl: str) -> Optional[int]:
    """Queries per call: `chunk_size` (None: all at once), capped by the fast path's own
    cache-sized chunks when that path runs.

    Raises:
        ValueError: chunk_size below 1.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"query chunk size must be >= 1, got {chunk_size}")
    fast = model.fast_chunk_size if impl == 'fast' and model.supports_fast else None
    if fast is None:
        return chunk_size
    return fast if chunk_size is None else min(chunk_size, fast)


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
    return decode_in_chunks(model.decoder(feat, impl), coord, cell,
                            effective_chunk_size(model, chunk_size, impl))
