"""PSNR evaluation of a model over a data loader, with the official protocols of LIIF, LTE
and SRNO.

LIIF: queries decoded in chunks (`eval_bsize` in the official code; the renderer's chunk policy
here, the same values), output clamped, not quantised, PSNR per image.
LTE adds `window` (mirror-pad for SwinIR, see inference.window) and `scale_max` (cells
multiplied by max(s / scale_max, 1) beyond the training scales; LTE's test.py does it by
default with 4, SRNO's with --mcell). SRNO decodes the whole grid at once, or `eval_bsize` rows
at a time (attention within each chunk).
"""
import math
from typing import Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.wrappers import source_of
from utils.coords import flat_batch, flat_to_grid
from utils.metrics import eval_scale, make_metric
from .renderer import Renderer


def hr_shape(inp: torch.Tensor, n_queries: int):
    """(H, W) of the HR grid behind Q queries of an (h, w) input, as the official test.py
    infers it (same scale on both axes), checked to cover exactly Q pixels."""
    ih, iw = inp.shape[-2:]
    s = math.sqrt(n_queries / (ih * iw))
    H = round(ih * s)
    W = n_queries // H
    if H * W != n_queries:
        raise ValueError(f"cannot reshape {n_queries} queries of a {ih}x{iw} input into an "
                         "image; evaluation with eval_type needs full, same-scale HR grids")
    return H, W


def check_scale(inp: torch.Tensor, shape, eval_type: Optional[str]) -> None:
    """ValueError unless the HR grid is exactly the input times eval_type's scale: an LR image
    of the wrong size (or from the wrong X<s> folder) would otherwise be measured."""
    scale = eval_scale(eval_type)
    if scale is None or shape is None:
        return
    h, w = inp.shape[-2:]
    if tuple(shape) != (h * scale, w * scale):
        raise ValueError(f"eval_type {eval_type} needs HR images of {scale}x the input: a "
                         f"{w}x{h} input came with a {shape[1]}x{shape[0]} HR grid")


def batch_source(loader: DataLoader, index: int) -> str:
    """The image file(s) of batch `index` of a one-image-per-batch loader, for messages."""
    if getattr(loader, 'batch_size', None) != 1:
        return f"batch {index}"
    return source_of(getattr(loader.dataset, 'dataset', loader.dataset), index)


def cell_factor(eval_type: Optional[str], scale_max: Optional[float]) -> float:
    """LTE's and SRNO's cell clipping: max(s / scale_max, 1), s the scale of eval_type."""
    if scale_max is None:
        return 1.0
    if not math.isfinite(scale_max) or scale_max <= 0:
        raise ValueError(f"scale_max (--scale-max) must be a positive number, got {scale_max}")
    scale = eval_scale(eval_type)
    if scale is None:
        raise ValueError("cell clipping (scale_max / --mcell) takes the scale from eval_type "
                         "('benchmark-<s>' or 'div2k-<s>'); the config has none")
    return max(scale / scale_max, 1.0)


@torch.no_grad()
def eval_psnr(loader: DataLoader, renderer: Renderer, eval_type: Optional[str] = None,
              eval_bsize: Optional[int] = None, scale_max: Optional[float] = None,
              verbose: bool = False) -> float:
    """Mean PSNR (dB) of the renderer's model over `loader`, per image, as the official
    eval_psnr: inputs normalised and predictions de-normalised with the renderer's data_norm,
    clamped to [0, 1] (not quantised).

    Args:
        loader: yields flat {'inp', 'coord' (B, Q, 2), 'cell' (B, Q, 2), 'gt' (B, Q, 3)} or
            grid {'coord' (B, H, W, 2), 'cell' (B, 2), 'gt' (B, 3, H, W)} batches, in [0, 1].
        renderer: the model with its data_norm and RenderOptions (path, precision, LTE's
            window, encoder tiles, memory budget). Inputs whose whole-image run does not fit
            the budget are encoded in tiles (the latent grid is kept whole).
        eval_type: None, 'div2k-<s>' or 'benchmark-<s>' (see utils.metrics).
        eval_bsize: for a whole_grid model (SRNO), rows of the output grid per chunk, as SRNO's
            test.py counts it (None: the whole grid at once). Other models' queries are
            independent: the renderer's chunk policy decodes them, with the same values as
            the official chunks of eval_bsize.
        scale_max: LTE's --scale_max / SRNO's --mcell cell clipping (None: off, as LIIF).
    """
    model = renderer.model
    model.eval()
    metric_fn = make_metric(eval_type)
    factor = cell_factor(eval_type, scale_max)
    device = next(model.parameters(), torch.zeros(())).device

    total, images = 0.0, 0  # PSNR summed per image
    pbar = tqdm(loader, leave=False, desc='val', disable=not verbose)
    for index, batch in enumerate(pbar):
        batch, grid = flat_batch({k: v.to(device) for k, v in batch.items()})
        coord, cell = batch['coord'], batch['cell'] * factor
        chunk_rows = model.whole_grid and eval_bsize is not None
        shape = grid
        if shape is None and (eval_type is not None or chunk_rows):
            shape = hr_shape(batch['inp'], coord.shape[1])
        check_scale(batch['inp'], shape, eval_type)
        pred = renderer.scene(batch['inp']).decode(
            coord, cell, eval_bsize * shape[1] if chunk_rows else None)
        if not bool(torch.isfinite(pred).all()):
            raise ValueError(f"the model's output is not finite (NaN or inf) on batch "
                             f"{index}; no PSNR can be reported")
        gt = batch['gt']
        if eval_type is not None:  # shaving needs images, not query lists
            pred = flat_to_grid(pred, *shape).contiguous()
            gt = flat_to_grid(gt, *shape).contiguous()
        try:
            psnr = metric_fn(pred, gt).item()
        except ValueError as e:
            raise ValueError(f"{batch_source(loader, index)}: {e}") from None
        if math.isnan(psnr):
            raise ValueError(f"{batch_source(loader, index)}: PSNR is NaN; no mean can be "
                             "reported")
        total += psnr * batch['inp'].shape[0]
        images += batch['inp'].shape[0]
        if verbose:
            pbar.set_description(f'val {total / images:.4f}')
    return total / images if images else float('nan')
