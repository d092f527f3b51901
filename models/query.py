"""Chunked querying, so that memory stays bounded whatever the number of queries."""
from typing import Optional

import torch
from torch import nn


def query_in_chunks(model: nn.Module, feat: torch.Tensor, coord: torch.Tensor,
                    cell: Optional[torch.Tensor], chunk_size: Optional[int]) -> torch.Tensor:
    """`model.query` over slices of at most `chunk_size` queries (all at once if None).

    LIIF queries are independent, so the result equals one big query.

    Args:
        feat: (B, C, h, w) from `model.encode`.
        coord, cell: (B, Q, 2).

    Returns:
        (B, Q, 3).
    """
    n = coord.shape[1]
    if chunk_size is None or chunk_size >= n:
        return model.query(feat, coord, cell)
    if chunk_size < 1:
        raise ValueError(f"query chunk size must be >= 1, got {chunk_size}")
    preds = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        preds.append(model.query(feat, coord[:, start:stop],
                                 None if cell is None else cell[:, start:stop]))
    return torch.cat(preds, dim=1)
