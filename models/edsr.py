"""EDSR encoder (Lim et al. 2017), with the official LIIF module layout and key names.

With `no_upsampling=True` it returns the (B, n_feats, h, w) feature map that LIIF decodes;
otherwise it is a fixed-scale super-resolution network returning (B, 3, s*h, s*w).
"""
import math
from types import SimpleNamespace

import torch
from torch import nn

from .models import register

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def default_conv(in_channels: int, out_channels: int, kernel_size: int,
                 bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Fixed 1x1 conv adding or subtracting the DIV2K mean.

    Kept for the official state-dict keys (`sub_mean.*`, `add_mean.*`); the official
    LIIF forward pass does not apply it, and neither does ours.
    """

    def __init__(self, rgb_range: float, rgb_mean=DIV2K_RGB_MEAN, rgb_std=(1.0, 1.0, 1.0),
                 sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        # Computed in Python, not with tensor arithmetic: under the meta device (the skeleton
        # models.make checks a checkpoint against) the first tensor operation imports
        # torch._dynamo, over a second of every script's start-up.
        self.weight.data = torch.tensor([[[[1.0 / rgb_std[i]]] if j == i else [[0.0]]
                                          for j in range(3)] for i in range(3)])
        self.bias.data = torch.tensor([sign * rgb_range * m / s
                                       for m, s in zip(rgb_mean, rgb_std)])
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, kernel_size: int, res_scale: float = 1):
        super().__init__()
        self.body = nn.Sequential(default_conv(n_feats, n_feats, kernel_size), nn.ReLU(True),
                                  default_conv(n_feats, n_feats, kernel_size))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    """Sub-pixel convolution upsampler for scale 2^n or 3."""

    def __init__(self, scale: int, n_feats: int):
        layers = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR upsampling scale {scale} is not supported; "
                             "expected a power of 2 or 3")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, args: SimpleNamespace):
        super().__init__()
        self.args = args
        kernel_size = 3
        self.sub_mean = MeanShift(args.rgb_range)
        self.add_mean = MeanShift(args.rgb_range, sign=1)
        self.head = nn.Sequential(default_conv(args.n_colors, args.n_feats, kernel_size))
        body = [ResBlock(args.n_feats, kernel_size, res_scale=args.res_scale)
                for _ in range(args.n_resblocks)]
        body.append(default_conv(args.n_feats, args.n_feats, kernel_size))
        self.body = nn.Sequential(*body)
        if args.no_upsampling:
            self.out_dim = args.n_feats
        else:
            self.out_dim = args.n_colors
            self.tail = nn.Sequential(Upsampler(args.scale, args.n_feats),
                                      default_conv(args.n_feats, args.n_colors, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised image -> (B, out_dim, h, w) features, or (B, 3, sh, sw)."""
        x = self.head(x)
        res = self.body(x) + x
        return res if self.args.no_upsampling else self.tail(res)


def _make_edsr(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range) -> EDSR:
    return EDSR(SimpleNamespace(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale,
                                scale=scale, no_upsampling=no_upsampling, rgb_range=rgb_range,
                                n_colors=3))


@register('edsr-baseline')
def make_edsr_baseline(n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1,
                       scale: int = 2, no_upsampling: bool = False, rgb_range: float = 1) -> EDSR:
    """EDSR-baseline: 16 blocks of 64 features."""
    return _make_edsr(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)


@register('edsr')
def make_edsr(n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1,
              scale: int = 2, no_upsampling: bool = False, rgb_range: float = 1) -> EDSR:
    """Full EDSR: 32 blocks of 256 features, residual scaling 0.1."""
    return _make_edsr(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)
