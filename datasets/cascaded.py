"""CLIT's test wrappers, read from its configs as they are (`sr-implicit-paired-cascaded`,
`sr-implicit-downsampled-cascaded`).

At test time (no inp_size) they give what LIIF's wrappers give: the whole LR image and its HR
crop (paired: HR cropped to s x LR, s = HR height // LR height; downsampled: LR of
floor(H / s + 1e-9) rows, HR cropped to round(lr * s), PIL bicubic). The cascade levels they
add are the model's business here: `clit` reads them from the cell (models.clit).

Training (inp_size, phase 'train'): CascadedTraining draws what the official collate_fn draws,
per batch: one scale per stage, the stage count cycling with k, crops, LR, sampled queries;
its batches are our flat form plus the cascade's `levels`, which the training step hands to
the model.
"""
import math
import random
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from utils.cascade import SCALE_BASE, level_sizes
from utils.coords import make_coord
from utils.schema import Either, ListOf, Num
from .datasets import register
from .sampling import apply_flips, resize_bicubic
from .wrappers import SRImplicitDownsampled, SRImplicitPaired



def check_test_args(name: str, inp_size: Optional[int], scale_base: float,
                    window_size: int) -> None:
    """ValueError for what these readers do not do: paired training crops, another
    scale_base, and the SwinIR padding of CLIT's test-swinir configs."""
    if inp_size is not None:
        raise ValueError(f"{name}: inp_size {inp_size} (training crops of pairs) is not "
                         "supported; CLIT trains from sr-implicit-downsampled-cascaded")
    if scale_base != SCALE_BASE:
        raise ValueError(f"{name}: scale_base {scale_base}; clit cascades in stages of "
                         f"x{SCALE_BASE}, as every official test config says")
    if window_size:
        raise ValueError(f"{name}: window_size {window_size} (CLIT's SwinIR padding, a whole "
                         "window even when divisible) is not supported")


@register('sr-implicit-paired-cascaded')
def paired_cascaded(dataset: Dataset, inp_size: Optional[int] = None, batch_size: int = 1,
                    scale_base: float = SCALE_BASE, sample_q: Optional[int] = None,
                    window_size: int = 0, augment: bool = False) -> Dataset:
    """CLIT's paired test wrapper: sr-implicit-paired on whole images."""
    check_test_args('sr-implicit-paired-cascaded', inp_size, scale_base, window_size)
    return SRImplicitPaired(dataset, augment=augment, sample_q=sample_q)


@register('sr-implicit-downsampled-cascaded')
def downsampled_cascaded(dataset: Dataset, inp_size: Optional[int] = None, batch_size: int = 1,
                         scale_base: float = SCALE_BASE, scale_min: float = 1,
                         scale_max: Optional[float] = None, sample_q: Optional[int] = None,
                         k: int = 1, window_size: int = 0, augment: bool = False,
                         phase: str = 'train') -> Dataset:
    """CLIT's downsampling test wrapper: sr-implicit-downsampled at exactly scale_max (the
    official test takes scale_max alone when there is no inp_size)."""
    if inp_size is not None:
        if phase != 'train':
            raise ValueError(f"sr-implicit-downsampled-cascaded: phase '{phase}' with inp_size "
                             "(CLIT's validation at fixed per-stage scales) is not supported; "
                             "validate with a test-style val_dataset (configs/train-clit)")
        return CascadedTraining(dataset, inp_size, scale_min, scale_max, sample_q, k, augment)
    check_test_args('sr-implicit-downsampled-cascaded', inp_size, scale_base, window_size)
    if scale_max is None:
        raise ValueError("sr-implicit-downsampled-cascaded: scale_max (the test scale) is "
                         "required")
    return SRImplicitDownsampled(dataset, scale_min=scale_max, scale_max=scale_max,
                                 augment=augment, sample_q=sample_q)


# Training gives one scale per stage (lists), testing one scale (config checks, utils.schema).
downsampled_cascaded.arg_ranges = {
    'scale_min': Either(Num(1), ListOf(Num(1))),
    'scale_max': Either(Num(1), ListOf(Num(1)), nullable=True)}


class CascadedTraining(Dataset):
    """CLIT's training samples, drawn per batch by `collate_fn` as the official wrapper draws
    them (the same calls on `random` and numpy, in the same order).

    Args:
        dataset: yields HR images (3, H, W) in [0, 1].
        inp_size: LR crop side.
        scale_min, scale_max: one range per stage; stage k's scale ~ U(min[k], max[k]).
        sample_q: queries sampled from the final level's pixels, without replacement.
        k: the stage count cycles k, 1, 2, ..., k - 1, k, 1, ... over the batches of each
            loader process (the official counter).
        augment: random flips and transpose of each HR image.
    """

    def __init__(self, dataset: Dataset, inp_size: int, scale_min: Sequence[float],
                 scale_max: Sequence[float], sample_q: int, k: int = 1, augment: bool = False):
        if not isinstance(scale_max, (list, tuple)) or not isinstance(scale_min, (list, tuple)) \
                or len(scale_min) != len(scale_max) or not scale_max:
            raise ValueError("sr-implicit-downsampled-cascaded: scale_min and scale_max are "
                             "lists with one scale per stage, of the same length; got "
                             f"{scale_min!r} and {scale_max!r}")
        if sample_q is None:
            raise ValueError("sr-implicit-downsampled-cascaded: training needs sample_q")
        self.dataset, self.inp_size, self.sample_q, self.k = dataset, inp_size, sample_q, k
        self.scale_min, self.scale_max, self.augment = list(scale_min), list(scale_max), augment
        self.counter = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        img = self.dataset[idx]
        if self.augment:
            flips = [random.random() < 0.5 for _ in range(3)]
            img = apply_flips(img, *flips)
        return {'inp': img}

    def stage_scales(self) -> List[float]:
        scales = [random.uniform(lo, hi) for lo, hi in zip(self.scale_min, self.scale_max)]
        if self.counter % self.k == 0:
            self.counter = 1
        else:
            del scales[self.counter:]
            self.counter += 1
        return scales

    def collate_fn(self, datas: List[Dict[str, torch.Tensor]]) -> Dict[str, Any]:
        """{'inp' (B, 3, s, s), 'coord' (B, q, 2), 'cell' (B, q, 2), 'gt' (B, q, 3),
        'levels' (K - 1, 2) the sizes of the levels before the last}."""
        scales, lr = self.stage_scales(), self.inp_size
        smallest = min(min(d['inp'].shape[-2:]) for d in datas)
        if math.prod(scales) * lr > smallest:
            scales[0] *= smallest / (math.prod(scales) * lr)
        sizes = [rows for rows, _ in level_sizes(lr, lr, scales)]
        H = sizes[-1]
        crops = []
        for d in datas:
            h0 = random.randint(0, d['inp'].shape[-2] - H)
            w0 = random.randint(0, d['inp'].shape[-1] - H)
            crops.append(d['inp'][:, h0:h0 + H, w0:w0 + H])
        inp = torch.stack([resize_bicubic(c, (lr, lr)) for c in crops])
        hr = torch.stack(crops)
        flat = make_coord((H, H))
        picks = [torch.from_numpy(np.random.choice(H * H, self.sample_q, replace=False))
                 for _ in crops]
        coord = torch.stack([flat[p] for p in picks])
        gt = F.grid_sample(hr, coord.flip(-1).unsqueeze(2), mode='nearest',
                           align_corners=False)[..., 0].transpose(1, 2)
        cell = torch.tensor([2 / H, 2 / H]).expand_as(coord).clone()
        levels = torch.tensor([[size, size] for size in sizes[:-1]], dtype=torch.long)
        return {'inp': inp, 'coord': coord, 'cell': cell, 'gt': gt, 'levels': levels.view(-1, 2)}
