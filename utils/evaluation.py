"""PSNR evaluation of a model over a data loader, with the official protocol."""
import math
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.query import query_in_chunks
from .devices import autocast
from .metrics import Averager, make_metric

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


@torch.no_grad()
def eval_psnr(loader: DataLoader, model: nn.Module, device: torch.device,
              data_norm: Optional[Dict[str, Any]] = None, eval_type: Optional[str] = None,
              eval_bsize: Optional[int] = None, verbose: bool = False, impl: str = 'fast',
              precision: str = 'fp32') -> float:
    """Mean PSNR (dB) of `model` over `loader`, per image, as the official eval_psnr.

    Inputs are normalised with data_norm['inp'], predictions de-normalised with
    data_norm['gt'] and clamped to [0, 1] (not quantised).

    Args:
        loader: yields {'inp', 'coord', 'cell', 'gt'} batches (see datasets.sampling).
        eval_type: None, 'div2k-<s>' or 'benchmark-<s>' (see utils.metrics).
        eval_bsize: queries per chunk; None queries all at once.
        impl: 'fast' or 'reference' query path (see models.query).
        precision: 'fp32', or 'bf16'/'fp16' autocast for the decoder.
    """
    model.eval()
    metric_fn = make_metric(eval_type)
    inp_sub, inp_div, gt_sub, gt_div = normalisers(data_norm, device)

    result = Averager()
    pbar = tqdm(loader, leave=False, desc='val', disable=not verbose)
    for batch in pbar:
        batch = {k: v.to(device) for k, v in batch.items()}
        inp = (batch['inp'] - inp_sub) / inp_div
        feat = model.encode(inp)  # float32 always: see utils.devices.autocast
        with autocast(device, precision):
            pred = query_in_chunks(model, feat, batch['coord'], batch['cell'], eval_bsize, impl)
        pred = (pred.float() * gt_div + gt_sub).clamp_(0, 1)
        gt = batch['gt']
        if eval_type is not None:  # shaving needs images, not query lists
            H, W = hr_shape(batch['inp'], batch['coord'].shape[1])
            shape = [inp.shape[0], H, W, 3]
            pred = pred.view(*shape).permute(0, 3, 1, 2).contiguous()
            gt = gt.view(*shape).permute(0, 3, 1, 2).contiguous()
        result.add(metric_fn(pred, gt).item(), inp.shape[0])
        if verbose:
            pbar.set_description(f'val {result.item():.4f}')
    return result.item()
