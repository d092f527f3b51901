"""PSNR with the official LIIF evaluation protocols, and a running average."""
import re
from functools import partial
from typing import Callable, Optional

import torch

# ITU-R BT.601 luma weights on [0, 1] RGB, as in EDSR/LIIF benchmark evaluation.
Y_WEIGHTS = (65.738, 129.057, 25.064)
Y_DIVISOR = 256
# DIV2K evaluation shaves `scale + DIV2K_EXTRA_SHAVE` border pixels.
DIV2K_EXTRA_SHAVE = 6

EVAL_TYPE_PATTERN = re.compile(r'^(div2k|benchmark)-(\d+)$')


def calc_psnr(sr: torch.Tensor, hr: torch.Tensor, dataset: Optional[str] = None,
              scale: int = 1, rgb_range: float = 1) -> torch.Tensor:
    """PSNR in dB of one batch, averaged over all its pixels.

    Args:
        sr, hr: (B, 3, H, W) images in [0, rgb_range].
        dataset: None (RGB, no shave), 'div2k' (RGB, shave scale + 6) or
            'benchmark' (Y channel, shave scale).
        scale: the upsampling scale, which sets the shaved border.

    Returns:
        0-dim tensor, PSNR in dB.
    """
    diff = (sr - hr) / rgb_range
    if dataset is None:
        valid = diff
    else:
        if dataset == 'benchmark':
            shave = scale
            if diff.size(1) > 1:
                weights = diff.new_tensor(Y_WEIGHTS).view(1, 3, 1, 1) / Y_DIVISOR
                diff = diff.mul(weights).sum(dim=1)
        elif dataset == 'div2k':
            shave = scale + DIV2K_EXTRA_SHAVE
        else:
            raise ValueError(f"unknown PSNR dataset '{dataset}'; expected None, 'div2k' "
                             "or 'benchmark'")
        valid = diff[..., shave:-shave, shave:-shave]
        if valid.numel() == 0:
            H, W = diff.shape[-2:]
            raise ValueError(f"a {W}x{H} image is too small for the {dataset} protocol at x"
                             f"{scale}: it shaves {shave} pixels off each border, leaving no "
                             "pixel to score")
    mse = valid.pow(2).mean()
    return -10 * torch.log10(mse)


def make_metric(eval_type: Optional[str]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The PSNR function for a config's `eval_type`.

    Args:
        eval_type: None (RGB, no shave), 'div2k-<scale>' or 'benchmark-<scale>'.
    """
    if eval_type is None:
        return calc_psnr
    match = EVAL_TYPE_PATTERN.match(str(eval_type))
    if match is None:
        raise ValueError(f"unknown eval_type '{eval_type}'; expected 'div2k-<scale>' or "
                         "'benchmark-<scale>' (or no eval_type for RGB PSNR without shave)")
    return partial(calc_psnr, dataset=match.group(1), scale=int(match.group(2)))


def eval_scale(eval_type: Optional[str]) -> Optional[int]:
    """The integer scale of 'div2k-<s>' / 'benchmark-<s>', None without eval_type."""
    if eval_type is None:
        return None
    make_metric(eval_type)  # names a malformed eval_type
    return int(EVAL_TYPE_PATTERN.match(str(eval_type)).group(2))
