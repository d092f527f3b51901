"""Wrappers that turn images into samples of queries (official semantics and names of LIIF,
LTE and SRNO): flat query lists, or the grids of the `-fast` wrappers."""
import math
import random
from typing import Dict, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.coords import make_coord
from .datasets import register
from .sampling import (RESIZES, augment_pair, crop_origin, downsample, grid_sample,
                       query_sample, resize_bicubic)

# Guards floor(H / s) against float error when s divides H exactly.
FLOOR_EPS = 1e-9
TOO_SMALL_CHOICES = ('error', 'skip')


def source_of(dataset: Dataset, idx: int) -> str:
    """The file(s) of item `idx` of a dataset that knows them (path_of), for messages."""
    return dataset.path_of(idx) if hasattr(dataset, 'path_of') else f'item {idx}'


def paired_scale(img_lr: torch.Tensor, img_hr: torch.Tensor, source: str) -> int:
    """The integer scale s of an (LR, HR) pair, as the official code takes it (HR height //
    LR height), checked: the same on both axes, and HR at most s - 1 pixels larger than
    s x LR (the official crop), else ValueError naming the files and sizes."""
    (h, w), (H, W) = img_lr.shape[-2:], img_hr.shape[-2:]
    s = H // h
    if s < 1 or W // w != s or H - h * s >= s or W - w * s >= s:
        raise ValueError(f"{source}: LR {w}x{h} and HR {W}x{H} are not an integer-scale pair "
                         "(HR must be s x LR, plus at most s - 1 pixels)")
    return s


@register('sr-implicit-paired')
class SRImplicitPaired(Dataset):
    """Samples from (LR, HR) pairs with an integer scale (e.g. the LR_bicubic benchmark files).

    Args:
        dataset: yields (lr (3, h, w), hr (3, H, W)) pairs.
        inp_size: LR crop size for training; None uses the whole image, HR cropped at the
            top-left to (s*h, s*w).
        augment: random flips and transpose.
        sample_q: number of HR pixels to keep; None keeps all.
    """

    def __init__(self, dataset: Dataset, inp_size: Optional[int] = None, augment: bool = False,
                 sample_q: Optional[int] = None):
        self.dataset = dataset
        self.inp_size = inp_size
        self.augment = augment
        self.sample_q = sample_q

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int):
        img_lr, img_hr = self.dataset[idx]
        s = paired_scale(img_lr, img_hr, source_of(self.dataset, idx))
        if self.inp_size is None:
            h_lr, w_lr = img_lr.shape[-2:]
            crop_lr, crop_hr = img_lr, img_hr[:, :h_lr * s, :w_lr * s]
        else:
            w_lr = self.inp_size
            if min(img_lr.shape[-2:]) < w_lr:
                raise ValueError(f"{source_of(self.dataset, idx)}: LR image "
                                 f"{img_lr.shape[-2]}x{img_lr.shape[-1]} is smaller than "
                                 f"inp_size {w_lr}")
            x0, y0 = crop_origin(img_lr.shape[-2:], w_lr)
            crop_lr = img_lr[:, x0:x0 + w_lr, y0:y0 + w_lr]
            crop_hr = img_hr[:, x0 * s:(x0 + w_lr) * s, y0 * s:(y0 + w_lr) * s]
        if self.augment:
            crop_lr, crop_hr = augment_pair(crop_lr, crop_hr)
        return self.sample(crop_lr, crop_hr)

    def sample(self, crop_lr: torch.Tensor, crop_hr: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Flat queries: see datasets.sampling.query_sample."""
        return query_sample(crop_lr, crop_hr, self.sample_q)


@register('sr-implicit-paired-fast')
class SRImplicitPairedFast(SRImplicitPaired):
    """LTE's grid form of sr-implicit-paired, for lte-fast: the HR pixels as a grid.

    Returns {'inp' (3, h, w), 'coord' (H, W, 2), 'cell' (2,), 'gt' (3, H, W)}; with inp_size,
    a random inp_size x inp_size window of the HR crop's grid (the official sampling).

    Args:
        dataset, inp_size, augment: as sr-implicit-paired.
    """

    def __init__(self, dataset: Dataset, inp_size: Optional[int] = None, augment: bool = False):
        super().__init__(dataset, inp_size, augment)

    def sample(self, crop_lr: torch.Tensor, crop_hr: torch.Tensor) -> Dict[str, torch.Tensor]:
        coord = make_coord(crop_hr.shape[-2:], flatten=False)
        gt = crop_hr
        if self.inp_size is not None:
            x0, y0 = crop_origin(crop_hr.shape[-2:], self.inp_size)
            coord = coord[x0:x0 + self.inp_size, y0:y0 + self.inp_size]
            gt = crop_hr[:, x0:x0 + self.inp_size, y0:y0 + self.inp_size]
        return grid_sample(crop_lr, crop_hr.shape[-2:], coord, gt)


@register('sr-implicit-downsampled')
class SRImplicitDownsampled(Dataset):
    """Samples made by downsampling HR images at a random continuous scale (Sec. 4.1).

    Args:
        dataset: yields HR images (3, H, W) in [0, 1].
        inp_size: LR crop size for training: an HR crop of round(inp_size * s) at a random
            position is PIL-bicubic resized to inp_size. None: the whole image, HR cropped at
            the top-left to round(floor(H/s) * s).
        scale_min, scale_max: s ~ U(scale_min, scale_max); scale_max defaults to scale_min.
        augment: random flips and transpose, after downsampling.
        sample_q: number of HR pixels to keep; None keeps all.
        too_small: what an image smaller than the HR crop does: 'error' (name the file and
            the sizes) or 'skip' (take the next image that fits; not in the official code).
        resize: how the LR is made: 'pil' (the official PIL bicubic) or 'matlab' (MATLAB's
            bicubic of the 8-bit HR, as the LR_bicubic files; integer scales; not in the
            official code).
    """

    def __init__(self, dataset: Dataset, inp_size: Optional[int] = None, scale_min: float = 1,
                 scale_max: Optional[float] = None, augment: bool = False,
                 sample_q: Optional[int] = None, too_small: str = 'error', resize: str = 'pil'):
        if too_small not in TOO_SMALL_CHOICES:
            raise ValueError(f"unknown too_small '{too_small}'; expected one of "
                             f"{', '.join(TOO_SMALL_CHOICES)}")
        if resize not in RESIZES:
            raise ValueError(f"unknown resize '{resize}'; expected one of {', '.join(RESIZES)}")
        self.resize = resize
        self.too_small = too_small
        self.dataset = dataset
        self.inp_size = inp_size
        self.scale_min = scale_min
        self.scale_max = scale_min if scale_max is None else scale_max
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, "
                             f"{self.scale_max}")
        self.augment = augment
        self.sample_q = sample_q

    def __len__(self) -> int:
        return len(self.dataset)

    def _image_that_fits(self, idx: int, s: float):
        """Item idx, or with too_small: skip the next item large enough for the HR crop."""
        if self.inp_size is None:
            return self.dataset[idx]
        w_hr = round(self.inp_size * s)
        for attempt in range(len(self.dataset)):
            img = self.dataset[(idx + attempt) % len(self.dataset)]
            if min(img.shape[-2:]) >= w_hr:
                return img
            if self.too_small == 'error':
                raise ValueError(f"{source_of(self.dataset, idx)}: image {img.shape[-2]}x"
                                 f"{img.shape[-1]} is smaller than the {w_hr}x{w_hr} HR crop "
                                 f"(inp_size {self.inp_size} at scale {s:.3f}); set "
                                 "too_small: skip to pass over such images")
        raise ValueError(f"no image of the dataset holds a {w_hr}-pixel HR crop")

    def __getitem__(self, idx: int):
        s = random.uniform(self.scale_min, self.scale_max)
        img = self._image_that_fits(idx, s)
        if self.inp_size is None:
            h_lr = math.floor(img.shape[-2] / s + FLOOR_EPS)
            w_lr = math.floor(img.shape[-1] / s + FLOOR_EPS)
            if min(h_lr, w_lr) < 1:
                raise ValueError(f"{source_of(self.dataset, idx)}: image {img.shape[-1]}x"
                                 f"{img.shape[-2]} is smaller than the scale x{s:g}: its "
                                 "downsampled input would have no pixel")
            crop_hr = img[:, :round(h_lr * s), :round(w_lr * s)]
            crop_lr = downsample(crop_hr, (h_lr, w_lr), self.resize, s)
        else:
            w_lr = self.inp_size
            w_hr = round(w_lr * s)
            x0, y0 = crop_origin(img.shape[-2:], w_hr)
            crop_hr = img[:, x0:x0 + w_hr, y0:y0 + w_hr]
            crop_lr = downsample(crop_hr, w_lr, self.resize, s)
        if self.augment:
            crop_lr, crop_hr = augment_pair(crop_lr, crop_hr)
        return self.sample(crop_lr, crop_hr)

    def sample(self, crop_lr: torch.Tensor, crop_hr: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Flat queries: see datasets.sampling.query_sample."""
        return query_sample(crop_lr, crop_hr, self.sample_q)


@register('sr-implicit-downsampled-fast')
class SRImplicitDownsampledFast(SRImplicitDownsampled):
    """The grid form of sr-implicit-downsampled (LTE and SRNO), for lte-fast and sronet.

    Returns {'inp' (3, h, w), 'coord' (H', W', 2), 'cell' (2,) = (2/H, 2/W), 'gt' (3, H', W')}:
    without inp_size the whole H x W HR grid; with it, h*w HR pixels drawn without
    replacement and laid out as an h x w grid (the official sampling: SRNO attends over them).

    Args:
        dataset, inp_size, scale_min, scale_max, augment, too_small, resize: as
            sr-implicit-downsampled.
    """

    def __init__(self, dataset: Dataset, inp_size: Optional[int] = None, scale_min: float = 1,
                 scale_max: Optional[float] = None, augment: bool = False,
                 too_small: str = 'error', resize: str = 'pil'):
        super().__init__(dataset, inp_size, scale_min, scale_max, augment, too_small=too_small,
                         resize=resize)

    def sample(self, crop_lr: torch.Tensor, crop_hr: torch.Tensor) -> Dict[str, torch.Tensor]:
        coord = make_coord(crop_hr.shape[-2:], flatten=False)
        gt = crop_hr
        if self.inp_size is not None:
            h, w = crop_lr.shape[-2:]
            keep = torch.from_numpy(np.random.choice(coord.shape[0] * coord.shape[1], h * w,
                                                     replace=False))
            coord = coord.view(-1, 2)[keep].view(h, w, 2)
            gt = crop_hr.reshape(crop_hr.shape[0], -1)[:, keep].view(-1, h, w)
        return grid_sample(crop_lr, crop_hr.shape[-2:], coord, gt)


@register('sr-implicit-uniform-varied')
class SRImplicitUniformVaried(Dataset):
    """(LR, HR) pairs with the HR resized to a size growing linearly over the dataset.

    Used by the official CelebA-HQ validation: item i gets an HR of size
    round(size_min + (size_max - size_min) * i / (N - 1)).

    Args:
        dataset: yields (lr, hr) pairs.
        size_min, size_max: HR size range; size_max defaults to size_min.
        augment: random horizontal flip.
        gt_resize: resize the HR to this size afterwards.
        sample_q: number of HR pixels to keep; None keeps all.
    """

    def __init__(self, dataset: Dataset, size_min: int, size_max: Optional[int] = None,
                 augment: bool = False, gt_resize: Optional[int] = None,
                 sample_q: Optional[int] = None):
        self.dataset = dataset
        self.size_min = size_min
        self.size_max = size_min if size_max is None else size_max
        self.augment = augment
        self.gt_resize = gt_resize
        self.sample_q = sample_q

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int):
        img_lr, img_hr = self.dataset[idx]
        p = idx / max(len(self.dataset) - 1, 1)
        img_hr = resize_bicubic(img_hr, round(self.size_min + (self.size_max - self.size_min) * p))
        if self.augment and random.random() < 0.5:
            img_lr, img_hr = img_lr.flip(-1), img_hr.flip(-1)
        if self.gt_resize is not None:
            img_hr = resize_bicubic(img_hr, self.gt_resize)
        return query_sample(img_lr, img_hr, self.sample_q)
