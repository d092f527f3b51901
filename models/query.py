"""Chunked querying, so that memory stays bounded whatever the number of queries."""
from typing import Callable, Optional

import torch
from torch import nn

IMPLS = ('reference', 'fast')
Decoder = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def check_impl(impl: str) -> None:
    """ValueError unless `impl` names a query path."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl '{impl}'; expected one of {', '.join(IMPLS)}")


def prepare_query(model: nn.Module, feat: torch.Tensor, impl: str = 'reference') -> Decoder:
    """A function (coord, cell) -> RGB decoding from `feat` with the chosen path.

    With impl='fast', a model that has a fast path projects the codes once here and every
    call reuses them; models without one (MetaSR, LIIF without a decoder MLP) use their
    reference path.
    """
    check_impl(impl)
    if impl == 'fast' and getattr(model, 'supports_fast', False):
        proj = model.project(feat)
        return lambda coord, cell: model.query_projected(proj, coord, cell)
    return lambda coord, cell: model.query(feat, coord, cell)


def decode_in_chunks(decode: Decoder, coord: torch.Tensor, cell: Optional[torch.Tensor],
                     chunk_size: Optional[int]) -> torch.Tensor:
    """`decode` over slices of at most `chunk_size` queries (all at once if None).

    LIIF queries are independent, so the result equals one big query.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"query chunk size must be >= 1, got {chunk_size}")
    n = coord.shape[1]
    step = n if chunk_size is None else chunk_size
    preds = [decode(coord[:, i:i + step], None if cell is None else cell[:, i:i + step])
             for i in range(0, n, step)]
    return preds[0] if len(preds) == 1 else torch.cat(preds, dim=1)


def query_in_chunks(model: nn.Module, feat: torch.Tensor, coord: torch.Tensor,
                    cell: Optional[torch.Tensor], chunk_size: Optional[int],
                    impl: str = 'reference') -> torch.Tensor:
    """`model.query` over chunks of queries, with the reference or the fast path.

    Args:
        feat: (B, C, h, w) from `model.encode`.
        coord, cell: (B, Q, 2).
        chunk_size: queries per chunk; None decodes all at once.
        impl: 'reference' or 'fast'.

    Returns:
        (B, Q, 3).
    """
    return decode_in_chunks(prepare_query(model, feat, impl), coord, cell, chunk_size)
