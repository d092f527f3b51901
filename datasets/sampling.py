"""Crop, resize, augmentation and pixel-sampling helpers shared by every wrapper."""
import random
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from utils.coords import make_cell, to_pixel_samples
from utils.matlab_resize import imresize_down

RESIZES = ('pil', 'matlab')  # how a downsampling wrapper makes its LR images


def pil_to_tensor01(img: Image.Image) -> torch.Tensor:
    """8-bit PIL RGB image -> (3, H, W) float32 in [0, 1], as torchvision's ToTensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def resize_bicubic(img: torch.Tensor, size) -> torch.Tensor:
    """PIL bicubic resize of a [0, 1] image, as the official `resize_fn`.

    The image is quantised to 8 bits by truncation first (torchvision's ToPILImage does
    `mul(255).byte()`), which the official x6+ evaluation numbers depend on.

    Args:
        img: (3, H, W) in [0, 1].
        size: output (h, w), or an int for a square output.

    Returns:
        (3, h, w) float32 in [0, 1].
    """
    h, w = (size, size) if isinstance(size, int) else size
    pil = Image.fromarray(img.mul(255).byte().permute(1, 2, 0).cpu().numpy())
    return pil_to_tensor01(pil.resize((w, h), Image.BICUBIC))


def downsample(hr: torch.Tensor, size, method: str, scale: float) -> torch.Tensor:
    """The LR image of an HR crop: 'pil', the official PIL bicubic (resize_bicubic), or
    'matlab', MATLAB's imresize(HR, 1/s, 'bicubic') of the 8-bit HR (the recipe of the
    LR_bicubic files, for an integer scale s whose multiple the crop is).

    Args:
        hr: (3, H, W) in [0, 1]; size: (h, w) or an int (square), the LR size.
    """
    if method == 'pil':
        return resize_bicubic(hr, size)
    if method != 'matlab':
        raise ValueError(f"unknown resize '{method}'; expected one of {', '.join(RESIZES)}")
    s = round(scale)
    if abs(s - scale) > 1e-9 or s < 1:
        raise ValueError(f"resize: matlab needs an integer scale, got x{scale:g} (set "
                         "scale_min = scale_max to an integer)")
    u8 = (hr * 255).round().byte().permute(1, 2, 0).numpy()
    return torch.from_numpy(imresize_down(u8, s)).permute(2, 0, 1).float().div(255)


def crop_origin(shape: Tuple[int, int], size: int) -> Tuple[int, int]:
    """Top-left (row, column) of a random size x size window of an image of `shape`, drawn as
    the official wrappers draw it (random.randint, the row first)."""
    x0 = random.randint(0, shape[0] - size)
    y0 = random.randint(0, shape[1] - size)
    return x0, y0


def random_flips() -> Dict[str, bool]:
    """Draws the three dihedral flips of the official augmentation (one RNG call each)."""
    return {'hflip': random.random() < 0.5, 'vflip': random.random() < 0.5,
            'dflip': random.random() < 0.5}


def augment_pair(lr: torch.Tensor, hr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The same random flips and transpose applied to an LR crop and its HR crop."""
    flips = random_flips()
    return apply_flips(lr, **flips), apply_flips(hr, **flips)


def apply_flips(x: torch.Tensor, hflip: bool, vflip: bool, dflip: bool) -> torch.Tensor:
    """Flips a (C, H, W) image: rows (hflip), columns (vflip), then transposes (dflip)."""
    if hflip:
        x = x.flip(-2)
    if vflip:
        x = x.flip(-1)
    if dflip:
        x = x.transpose(-2, -1)
    return x


def query_sample(inp: torch.Tensor, hr: torch.Tensor,
                 sample_q: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Turns an (LR, HR) pair into a LIIF training/evaluation sample.

    Args:
        inp: (3, h, w) LR image in [0, 1].
        hr: (3, H, W) HR image in [0, 1].
        sample_q: keep this many HR pixels, drawn without replacement; None keeps all.

    Returns:
        {'inp': (3, h, w), 'coord': (Q, 2) in (-1, 1) (row, col), 'cell': (Q, 2) = (2/H, 2/W),
         'gt': (Q, 3) in [0, 1]}.
    """
    coord, gt = to_pixel_samples(hr.contiguous())
    if sample_q is not None:
        if sample_q > len(coord):
            raise ValueError(f"sample_q={sample_q} exceeds the {len(coord)} pixels of a "
                             f"{hr.shape[-2]}x{hr.shape[-1]} HR crop")
        keep = np.random.choice(len(coord), sample_q, replace=False)
        coord, gt = coord[keep], gt[keep]
    return {'inp': inp, 'coord': coord, 'cell': make_cell(coord, hr.shape[-2:]), 'gt': gt}


def grid_sample(inp: torch.Tensor, hr_size: Tuple[int, int], coord: torch.Tensor,
                gt: torch.Tensor) -> Dict[str, torch.Tensor]:
    """A sample in the grid form of LTE's and SRNO's `-fast` wrappers.

    Args:
        inp: (3, h, w) LR image in [0, 1].
        hr_size: (H, W) of the HR crop, which sets the cell.
        coord: (H', W', 2) HR pixel centres to decode, (row, col) in (-1, 1).
        gt: (3, H', W') their values in [0, 1].

    Returns:
        {'inp', 'coord', 'cell': (2,) = (2/H, 2/W), 'gt'}.
    """
    cell = torch.tensor([2 / hr_size[0], 2 / hr_size[1]], dtype=torch.float32)
    return {'inp': inp, 'coord': coord, 'cell': cell, 'gt': gt}
