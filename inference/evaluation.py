"""Evaluation of a model over a data loader, image by image: the metrics of utils.metrics
under a protocol (LIIF's by default, or BasicSR's), with the official decoding of LIIF, LTE
and SRNO, and optionally a geometric self-ensemble (inference.self_ensemble).

LIIF: queries decoded in chunks (`eval_bsize` in the official code; the memory plan's here,
the same values), output clamped, not quantised, PSNR per image.
LTE adds `window` (mirror-pad for SwinIR, see inference.window) and `scale_max` (cells
multiplied by max(s / scale_max, 1) beyond the training scales; LTE's test.py does it by
default with 4, SRNO's with --mcell). SRNO decodes the whole grid at once, or `eval_bsize` rows
at a time (attention within each chunk).
"""
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import datasets
import utils.metrics
from datasets.wrappers import source_of
from utils.config import read_config, require, test_schema
from utils.coords import flat_batch, flat_to_grid
from utils.metrics import BACKBONES, Protocol, eval_scale, make_protocol, perceptual
from .renderer import Renderer
from .self_ensemble import self_ensemble as run_self_ensemble
from .tiled_test import TILED_MAX_SCALE, tiled_render

DOWNSAMPLING_WRAPPERS = ('sr-implicit-downsampled', 'sr-implicit-downsampled-fast')


def test_loader(config_path: str, data_root: Optional[str] = None,
                overrides: Sequence[str] = (), lr: str = 'pil', workers: int = 0,
                device: torch.device = torch.device('cpu')) -> Tuple[Dict[str, Any], DataLoader]:
    """(the test config, the DataLoader of its test_dataset), paths under ./load re-rooted at
    `data_root`; with lr='matlab' a downsampling wrapper makes its LR with MATLAB's bicubic
    (paired configs read their LR files as they are: LR_bicubic is MATLAB's already)."""
    config = read_config(config_path, overrides, test_schema(datasets.DATASETS), data_root)
    spec = require(config, 'test_dataset', config_path)
    wrapper = require(spec, 'wrapper', f'{config_path}: test_dataset')
    if lr == 'matlab' and wrapper.get('name') in DOWNSAMPLING_WRAPPERS:
        wrapper['args'] = {**(wrapper.get('args') or {}), 'resize': 'matlab'}
    dataset = datasets.make(require(spec, 'dataset', f'{config_path}: test_dataset'))
    dataset = datasets.make(wrapper, args={'dataset': dataset})
    return config, DataLoader(dataset, batch_size=spec.get('batch_size', 1),
                              num_workers=workers, pin_memory=device.type == 'cuda')


def image_name(loader: DataLoader, index: int) -> str:
    """The file stem of batch `index` of a one-image-per-batch loader (the HR file's, for
    paired folders), as --results names images."""
    return os.path.splitext(os.path.basename(batch_source(loader, index).split(' / ')[-1]))[0]


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


@dataclass
class Results:
    """Per-image scores of an evaluation: one row per image (its file stem and its score of
    each metric), and their means (over images, as the official eval_psnr)."""
    metrics: Tuple[str, ...]
    images: List[str] = field(default_factory=list)
    rows: List[List[float]] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        column = [row[self.metrics.index(metric)] for row in self.rows]
        return sum(column) / len(column) if column else float('nan')


@torch.no_grad()
def evaluate(loader: DataLoader, renderer: Renderer, eval_type: Optional[str] = None,
             eval_bsize: Optional[int] = None, scale_max: Optional[float] = None,
             metrics: Sequence[str] = ('psnr',), protocol: Optional[Protocol] = None,
             self_ensemble: Optional[str] = None, metric_weights: Optional[str] = None,
             verbose: bool = False, skip: Collection[str] = (),
             on_image: Optional[Callable[[str, List[float]], None]] = None,
             tiles: Optional[Tuple[int, int]] = None) -> Results:
    """The renderer's model scored over `loader`, image by image, as the official eval_psnr:
    inputs normalised and predictions de-normalised with the renderer's data_norm, clamped to
    [0, 1] (quantised only by a protocol that says so).

    Args:
        loader: yields flat {'inp', 'coord' (B, Q, 2), 'cell' (B, Q, 2), 'gt' (B, Q, 3)} or
            grid {'coord' (B, H, W, 2), 'cell' (B, 2), 'gt' (B, 3, H, W)} batches, in [0, 1].
        renderer: the model with its data_norm and RenderOptions (path, precision, LTE's
            window, encoder tiles, memory budget). Inputs whose whole-image run does not fit
            the budget are encoded in tiles (the latent grid is kept whole).
        eval_type: None, 'div2k-<s>' or 'benchmark-<s>' (see utils.metrics).
        eval_bsize: for a whole_grid model (SRNO), rows of the output grid per chunk, as SRNO's
            test.py counts it (None: the whole grid at once). Other models' queries are
            independent: the memory plan decodes them, with the same values as the official
            chunks of eval_bsize.
        scale_max: LTE's --scale_max / SRNO's --mcell cell clipping (None: off, as LIIF).
        metrics: names of utils.metrics.METRICS; ssim, lpips and dists need whole images.
        protocol: what the metrics see (default: LIIF's for eval_type).
        self_ensemble: 'x8' or 'rot4' (inference.self_ensemble), or None.
        metric_weights: the backbone weights of lpips or dists (utils.metrics.backbone_file).
        skip: names (image_name) of images not to score (a resumed benchmark's).
        on_image: called with each image's name and scores as soon as they are known.
        tiles: (tile, overlap) of CiaoSR's tiled test (inference.tiled_test), used at the
            integer scales of eval_type up to x4 (above, whole images, as CiaoSR's test).
    """
    model = renderer.model
    model.eval()
    metrics = tuple(metrics)
    protocol = protocol or make_protocol('liif', eval_type)
    factor = cell_factor(eval_type, scale_max)
    device = next(model.parameters(), torch.zeros(())).device
    scorers = {name: perceptual(name, metric_weights, device) if name in BACKBONES
               else getattr(utils.metrics, name) for name in metrics}

    scale = eval_scale(eval_type)
    if tiles is not None and scale is None:
        raise ValueError("the tiled test takes its scale from eval_type ('benchmark-<s>' or "
                         "'div2k-<s>'); the config has none")
    tiled = tiles is not None and scale <= TILED_MAX_SCALE
    if tiled and (self_ensemble or factor != 1.0):
        raise ValueError("the tiled test runs each tile as an image of its own; it does not "
                         "combine with a self-ensemble or cell clipping")
    results = Results(tuple(metrics))
    pbar = tqdm(loader, leave=False, desc='val', disable=not verbose)
    for index, batch in enumerate(pbar):
        if skip and image_name(loader, index) in skip:
            continue
        batch, grid = flat_batch({k: v.to(device) for k, v in batch.items()})
        coord, cell = batch['coord'], batch['cell'] * factor
        chunk_rows = eval_bsize if model.whole_grid else None
        shape = grid
        if shape is None and (eval_type is not None or chunk_rows or self_ensemble or
                              metrics != ('psnr',)):
            shape = hr_shape(batch['inp'], coord.shape[1])
        check_scale(batch['inp'], shape, eval_type)
        if tiled:
            pred = tiled_render(renderer, batch['inp'], scale, *tiles)
        elif self_ensemble:
            pred = run_self_ensemble(
                lambda img, c, s, w: renderer.scene(img).decode(
                    c, s, chunk_rows and chunk_rows * w, clamp=False),
                batch['inp'], shape, self_ensemble, factor)
        else:
            pred = renderer.scene(batch['inp']).decode(
                coord, cell, chunk_rows and chunk_rows * shape[1])
        if not bool(torch.isfinite(pred).all()):
            raise ValueError(f"the model's output is not finite (NaN or inf) on batch "
                             f"{index}; no PSNR can be reported")
        gt = batch['gt']
        if shape is not None:  # shaving, SSIM and the perceptual metrics need images
            pred = flat_to_grid(pred, *shape).contiguous()
            gt = flat_to_grid(gt, *shape).contiguous()
        source = batch_source(loader, index)
        try:
            scores = [float(scorers[name](pred, gt, protocol)) for name in metrics]
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        if any(math.isnan(v) for v in scores):
            raise ValueError(f"{source}: a score is NaN; no mean can be reported")
        results.images.append(image_name(loader, index))
        results.rows.append(scores)
        if on_image is not None:
            on_image(results.images[-1], scores)
        if verbose:
            pbar.set_description(f'val {results.mean(metrics[0]):.4f}')
    return results


def eval_psnr(loader: DataLoader, renderer: Renderer, eval_type: Optional[str] = None,
              eval_bsize: Optional[int] = None, scale_max: Optional[float] = None,
              verbose: bool = False) -> float:
    """Mean PSNR (dB) with LIIF's protocol: `evaluate` with its defaults (training-time
    validation, the official eval_psnr's number)."""
    return evaluate(loader, renderer, eval_type, eval_bsize, scale_max,
                    verbose=verbose).mean('psnr')
