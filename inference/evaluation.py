"""PSNR evaluation of a model over a data loader, with the official protocols of LIIF, LTE
and SRNO.

LIIF: queries decoded in chunks of `eval_bsize`, output clamped, not quantised, PSNR per image.
LTE adds `window` (mirror-pad for SwinIR, see inference.window) and `scale_max` (cells
multiplied by max(s / scale_max, 1) beyond the training scales; LTE's test.py does it by
default with 4, SRNO's with --mcell). SRNO decodes the whole grid at once, or `eval_bsize` rows
at a time (attention within each chunk).
"""
import math
from typing import Any, Dict, Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from models import ImplicitDecoder
from utils.coords import flat_batch, flat_to_grid
from utils.devices import autocast
from utils.metrics import Averager, eval_scale, make_metric
from .chunks import predict
from .memory import default_budget, plan_for
from .tiling import encode
from .window import pad_to_window, to_padded_domain

IDENTITY_NORM = {'inp': {'sub': [0], 'div': [1]}, 'gt': {'sub': [0], 'div': [1]}}


def normalisers(data_norm: Optional[Dict[str, Any]], device: torch.device):
    """(inp_sub, inp_div) shaped (1, C, 1, 1) and (gt_sub, gt_div) shaped (1, 1, C) from a
    config's data_norm: inputs are fed as (x - sub) / div, targets compared the same way."""
    norm = data_norm or IDENTITY_NORM

    def vec(key, part, shape):
        return torch.tensor(norm[key][part], dtype=torch.float32, device=device).view(shape)
    return (vec('inp', 'sub', (1, -1, 1, 1)), vec('inp', 'div', (1, -1, 1, 1)),
            vec('gt', 'sub', (1, 1, -1)), vec('gt', 'div', (1, 1, -1)))


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


def cell_factor(eval_type: Optional[str], scale_max: Optional[float]) -> float:
    """LTE's and SRNO's cell clipping: max(s / scale_max, 1), s the scale of eval_type."""
    if scale_max is None:
        return 1.0
    if scale_max <= 0:
        raise ValueError(f"scale_max must be positive, got {scale_max}")
    scale = eval_scale(eval_type)
    if scale is None:
        raise ValueError("cell clipping (scale_max / --mcell) takes the scale from eval_type "
                         "('benchmark-<s>' or 'div2k-<s>'); the config has none")
    return max(scale / scale_max, 1.0)


@torch.no_grad()
def eval_psnr(loader: DataLoader, model: ImplicitDecoder, device: torch.device,
              data_norm: Optional[Dict[str, Any]] = None, eval_type: Optional[str] = None,
              eval_bsize: Optional[int] = None, verbose: bool = False, impl: str = 'fast',
              precision: str = 'fp32', window: int = 0,
              scale_max: Optional[float] = None, encoder_tile: Optional[int] = None,
              max_memory: Optional[float] = None) -> float:
    """Mean PSNR (dB) of `model` over `loader`, per image, as the official eval_psnr.

    Inputs are normalised with data_norm['inp'], predictions de-normalised with
    data_norm['gt'] and clamped to [0, 1] (not quantised).

    Args:
        loader: yields flat {'inp', 'coord' (B, Q, 2), 'cell' (B, Q, 2), 'gt' (B, Q, 3)} or
            grid {'coord' (B, H, W, 2), 'cell' (B, 2), 'gt' (B, 3, H, W)} batches.
        eval_type: None, 'div2k-<s>' or 'benchmark-<s>' (see utils.metrics).
        eval_bsize: queries per chunk (None: all at once); for a whole_grid model (SRNO),
            rows of the output grid per chunk, as SRNO's test.py counts it.
        impl: 'fast' or 'reference' query path.
        precision: 'fp32', or 'bf16'/'fp16' autocast for the decoder.
        window: LTE's --window: mirror-pad inputs to this window (0: off).
        scale_max: LTE's --scale_max / SRNO's --mcell cell clipping (None: off, as LIIF).
        encoder_tile: encode inputs in tiles of this side (see inference.tiling; the same
            codes); None: whole, or as max_memory decides.
        max_memory: working memory for the model in bytes (None: inference.memory's default
            budget); inputs whose whole-image run does not fit are encoded in tiles sized to
            it (the latent grid is kept whole; the query chunks are the protocol's eval_bsize).
            A budget given is a limit (ValueError when too small), the default one a guide.
    """
    model.eval()
    metric_fn = make_metric(eval_type)
    factor = cell_factor(eval_type, scale_max)
    inp_sub, inp_div, gt_sub, gt_div = normalisers(data_norm, device)

    budget = max_memory or default_budget(device)
    result = Averager()
    pbar = tqdm(loader, leave=False, desc='val', disable=not verbose)
    for index, batch in enumerate(pbar):
        batch, grid = flat_batch({k: v.to(device) for k, v in batch.items()})
        inp = (batch['inp'] - inp_sub) / inp_div
        coord, cell = batch['coord'], batch['cell'] * factor
        chunk_rows = model.whole_grid and eval_bsize is not None
        shape = grid
        if shape is None and (eval_type is not None or chunk_rows):
            shape = hr_shape(batch['inp'], coord.shape[1])
        check_scale(batch['inp'], shape, eval_type)
        if window:
            size = inp.shape[-2:]
            inp = pad_to_window(inp, window)
            coord, cell = to_padded_domain(coord, cell, size, inp.shape[-2:])
        chunk = eval_bsize * shape[1] if chunk_rows else eval_bsize
        tile = encoder_tile or plan_for(
            model, tuple(inp.shape[-2:]), budget, chunk or coord.shape[1], impl, precision,
            device, bands=False, strict=max_memory is not None).encoder_tile
        feat = encode(model, inp, tile)  # float32 always: see utils.devices.autocast
        with autocast(device, precision):
            pred = predict(model, feat, coord, cell, chunk, impl)
        if not bool(torch.isfinite(pred).all()):
            raise ValueError(f"the model's output is not finite (NaN or inf) on batch "
                             f"{index}; no PSNR can be reported")
        pred = (pred.float() * gt_div + gt_sub).clamp_(0, 1)
        gt = batch['gt']
        if eval_type is not None:  # shaving needs images, not query lists
            pred = flat_to_grid(pred, *shape).contiguous()
            gt = flat_to_grid(gt, *shape).contiguous()
        result.add(metric_fn(pred, gt).item(), inp.shape[0])
        if verbose:
            pbar.set_description(f'val {result.item():.4f}')
    return result.item()
