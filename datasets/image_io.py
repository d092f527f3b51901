"""Reading images as float tensors, and the PIL bicubic resize of the official code."""
import os

import numpy as np
import torch
from PIL import Image

from utils.images import read_image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def pil_to_tensor01(img: Image.Image) -> torch.Tensor:
    """8-bit PIL RGB image -> (3, H, W) float32 in [0, 1], as torchvision's ToTensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def read_rgb(path: str) -> torch.Tensor:
    """Reads any image as RGB, as a viewer shows it (see utils.images.read_image: EXIF
    orientation applied, 16-bit and float samples scaled to [0, 1]; grayscale repeated on the
    three channels, alpha dropped). For 8-bit files the values are those of the official
    code's `ToTensor()(Image.open(path).convert('RGB'))`.

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    return torch.from_numpy(read_image(path).rgb).permute(2, 0, 1).contiguous()


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
