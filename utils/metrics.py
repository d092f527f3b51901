"""Every metric of the evaluation, with each protocol that reports it.

* LIIF's PSNR (`calc_psnr`): what the official test.py prints; float outputs, clamped, not
  quantised; `benchmark-s` is the Y channel with weights / 256 and shave s, `div2k-s` RGB with
  shave s + 6.
* BasicSR's PSNR and SSIM (`psnr_255`, `ssim_255` on `rgb_to_y` or RGB): what most SR papers
  report (`calculate_psnr`, `calculate_ssim` of XPixelGroup/BasicSR): images in [0, 255] in
  float64, the border cropped, MATLAB's BT.601 luma (16 + 65.481 R + 128.553 G + 24.966 B, not
  rounded) for the Y channel; SSIM with an 11 x 11 Gaussian window of sigma 1.5 over the valid
  region only, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over the map and channels.
* CLIT's PSNR and SSIM (`ssim_clit`): its test.py's PSNR is LIIF's; its SSIM is its own: float
  outputs in [0, 1] (not quantised), RGB, no border cropped, an 11 x 11 Gaussian window of sigma
  1.5 in float32 with zero "same" padding (the border is scored), C1 = 0.01^2, C2 = 0.03^2, the
  mean over channels and pixels. Its eval_type `ssim-<s>` makes SSIM the result.
* LPIPS and DISTS (`perceptual`): torchmetrics' learned heads on torchvision's ImageNet
  backbones, optional (torchmetrics installed, the backbone's weights on disk).

A Protocol says what a metric sees: the output quantised to 8 bits or not, RGB or Y, and the
border cropped (inference.evaluation applies it).
"""
import argparse
import math
import os
import re
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights on [0, 1] RGB, as in EDSR/LIIF benchmark evaluation.
Y_WEIGHTS = (65.738, 129.057, 25.064)
Y_DIVISOR = 256
# DIV2K evaluation shaves `scale + DIV2K_EXTRA_SHAVE` border pixels.
DIV2K_EXTRA_SHAVE = 6
# BasicSR's (MATLAB rgb2ycbcr's) luma on [0, 1] RGB, in [16, 235].
BT601 = (65.481, 128.553, 24.966)
BT601_OFFSET = 16.0
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

EVAL_TYPE_PATTERN = re.compile(r'^(div2k|benchmark)-(\d+)$')
# CLIT's eval_type that makes SSIM the result (--protocol clit only).
SSIM_EVAL_TYPE = re.compile(r'^ssim-(\d+)$')


def calc_psnr(sr: torch.Tensor, hr: torch.Tensor, dataset: Optional[str] = None,
              scale: int = 1, rgb_range: float = 1) -> torch.Tensor:
    """LIIF's PSNR in dB of one batch, averaged over all its pixels.

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
        valid = crop(diff, shave)
        if valid.numel() == 0:
            H, W = diff.shape[-2:]
            raise ValueError(f"a {W}x{H} image is too small for the {dataset} protocol at x"
                             f"{scale}: it shaves {shave} pixels off each border, leaving no "
                             "pixel to score")
    mse = valid.pow(2).mean()
    return -10 * torch.log10(mse)


def make_metric(eval_type: Optional[str]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LIIF's PSNR function for a config's `eval_type`.

    Args:
        eval_type: None (RGB, no shave), 'div2k-<scale>' or 'benchmark-<scale>'.
    """
    if eval_type is None:
        return calc_psnr
    if SSIM_EVAL_TYPE.match(str(eval_type)):
        raise ValueError(f"eval_type '{eval_type}' is CLIT's (its SSIM as the result): "
                         "use --protocol clit")
    match = EVAL_TYPE_PATTERN.match(str(eval_type))
    if match is None:
        raise ValueError(f"unknown eval_type '{eval_type}'; expected 'div2k-<scale>' or "
                         "'benchmark-<scale>' (or no eval_type for RGB PSNR without shave)")
    return partial(calc_psnr, dataset=match.group(1), scale=int(match.group(2)))


def eval_scale(eval_type: Optional[str]) -> Optional[int]:
    """The integer scale of 'div2k-<s>' / 'benchmark-<s>', None without eval_type."""
    if eval_type is None:
        return None
    if SSIM_EVAL_TYPE.match(str(eval_type)):
        return int(SSIM_EVAL_TYPE.match(str(eval_type)).group(1))
    make_metric(eval_type)  # names a malformed eval_type
    return int(EVAL_TYPE_PATTERN.match(str(eval_type)).group(2))


def crop(img: torch.Tensor, border: int) -> torch.Tensor:
    """(..., H, W) without `border` pixels on each side."""
    return img[..., border:img.shape[-2] - border, border:img.shape[-1] - border] \
        if border else img


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 255] -> (B, 1, H, W) BT.601 luma in [16, 235], not rounded."""
    weights = img.new_tensor(BT601).view(1, 3, 1, 1)
    return (img * weights).sum(dim=1, keepdim=True) / 255 + BT601_OFFSET


def psnr_255(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """BasicSR's PSNR (dB) of each image: (B, C, H, W) in [0, 255] -> (B,) float64."""
    mse = (sr.double() - hr.double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(255.0 ** 2 / mse)


def gaussian_window(device: torch.device) -> torch.Tensor:
    """(1, 1, 11, 11) float64 window: the outer product of OpenCV's 1-D Gaussian kernel."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, SSIM_WINDOW, SSIM_WINDOW)


def ssim_255(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """BasicSR's SSIM of each image: (B, C, H, W) in [0, 255] -> (B,) float64, the mean over
    the valid region's map and the channels."""
    x, y = sr.double(), hr.double()
    B, C, H, W = x.shape
    if min(H, W) < SSIM_WINDOW:
        raise ValueError(f"a {W}x{H} image is smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} "
                         "window")
    window = gaussian_window(x.device).expand(C, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=C)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / \
        ((mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return ssim_map.flatten(1).mean(dim=1)


@dataclass(frozen=True)
class Protocol:
    """What the metrics see of an output and its ground truth.

    name: 'liif' (the official test.py's: float outputs, LIIF's PSNR, and SSIM on the same
        crop and channels) or 'basicsr' (8-bit outputs, BasicSR's PSNR and SSIM).
    quantise: round the output to 8 bits first (round(x * 255), half to even, as BasicSR's
        tensor2img).
    y_channel: score the BT.601 luma, else RGB.
    border: pixels cropped off each side.
    eval_type: LIIF's eval_type, for its PSNR ('benchmark-s', 'div2k-s' or None).
    """
    name: str
    quantise: bool
    y_channel: bool
    border: int
    eval_type: Optional[str] = None


PROTOCOLS = ('liif', 'basicsr', 'clit', 'ciaosr')


def make_protocol(name: str, eval_type: Optional[str], y_channel: Optional[bool] = None,
                  border: Optional[int] = None) -> Protocol:
    """The Protocol of test.py's --protocol for a config's eval_type: LIIF's takes its
    channels and border from eval_type (y_channel and border must then be None); BasicSR's
    crops the scale (or `border`) on RGB or, with y_channel, the Y channel."""
    scale = eval_scale(eval_type)
    if name in ('liif', 'clit'):
        if y_channel or border is not None:
            raise ValueError(f"{name}'s protocol takes its channels and border from "
                             "eval_type; --y-channel and --crop-border are for --protocol "
                             "basicsr")
        if SSIM_EVAL_TYPE.match(str(eval_type)):
            if name != 'clit':
                make_metric(eval_type)  # raises: the eval_type is CLIT's
            return Protocol('clit', False, False, 0, eval_type)
        kind = EVAL_TYPE_PATTERN.match(eval_type).group(1) if eval_type else None
        shave = 0 if kind is None else scale + (DIV2K_EXTRA_SHAVE if kind == 'div2k' else 0)
        return Protocol(name, False, kind == 'benchmark', shave, eval_type)
    if name == 'ciaosr':  # mmedit's PSNR / SSIM with convert_to='y', crop_border = scale
        if y_channel is not None or border is not None:
            raise ValueError("CiaoSR's protocol is the Y channel with the scale cropped; "
                             "--y-channel and --crop-border are for --protocol basicsr")
        if scale is None:
            raise ValueError("CiaoSR's protocol crops the scale: the config needs an eval_type "
                             "('benchmark-<s>' or 'div2k-<s>')")
        return Protocol('ciaosr', True, True, scale)
    if name == 'basicsr':
        if border is not None and border < 0:
            raise ValueError(f"--crop-border must be >= 0, got {border}")
        return Protocol('basicsr', True, bool(y_channel),
                        border if border is not None else scale or 0)
    raise ValueError(f"unknown protocol '{name}'; expected one of {', '.join(PROTOCOLS)}")


def protocol_note(name: str, y_channel: bool = False, border: Optional[int] = None) -> str:
    """One line saying what a protocol measures, for the header of a results table."""
    if name == 'liif':
        return ("LIIF's test.py: float outputs clamped to [0, 1]; benchmark sets on Y "
                "(weights / 256), border = scale; DIV2K on RGB, border = scale + 6")
    if name == 'ciaosr':
        return ("CiaoSR's test (mmedit's PSNR / SSIM = BasicSR's): 8-bit outputs, Y (BT.601), "
                "border = scale; tiled (192, overlap 32) at x <= 4, whole images above")
    if name == 'clit':
        return ("CLIT's test.py: LIIF's PSNR; SSIM on float RGB in [0, 1], no border cropped, "
                "zero-padded 11 x 11 Gaussian window (float32)")
    channels = 'Y (BT.601, MATLAB)' if y_channel else 'RGB'
    crop_text = 'scale' if border is None else str(border)
    return (f"BasicSR's calculate_psnr / calculate_ssim: 8-bit outputs (round(x * 255)), "
            f"{channels}, border = {crop_text}, float64")


def prepare(img: torch.Tensor, protocol: Protocol, gt: bool = False) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> what the protocol's metrics score, in [0, 255] float64:
    quantised (outputs; the ground truth is 8-bit already), cropped, RGB or Y."""
    x = img.double() * 255
    if protocol.quantise:
        x = (img.float() * 255).round().double() if not gt else x.round()
    x = crop(x, protocol.border)
    return rgb_to_y(x) if protocol.y_channel else x


def psnr(sr: torch.Tensor, hr: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """(B,) PSNR of (B, 3, H, W) outputs and ground truths in [0, 1] under the protocol."""
    if protocol.name in ('liif', 'clit'):
        eval_type = protocol.eval_type
        if eval_type is not None and SSIM_EVAL_TYPE.match(eval_type):
            eval_type = None  # CLIT's SSIM configs: PSNR on RGB without shave, as its SSIM
        return make_metric(eval_type)(sr, hr).view(1).double()
    return psnr_255(prepare(sr, protocol), prepare(hr, protocol, gt=True))


def ssim(sr: torch.Tensor, hr: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """(B,) SSIM of (B, 3, H, W) outputs and ground truths in [0, 1] under the protocol."""
    if protocol.name == 'clit':
        return ssim_clit(sr, hr).view(1).double()
    return ssim_255(prepare(sr, protocol), prepare(hr, protocol, gt=True))


def ssim_clit(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """CLIT's utils.ssim: the mean SSIM of (B, C, H, W) images in [0, 1] over the batch,
    channels and every pixel (zero "same" padding), in float32."""
    x, y = sr.float(), hr.float()
    C = x.shape[1]
    g = torch.tensor([math.exp(-(i - SSIM_WINDOW // 2) ** 2 / float(2 * SSIM_SIGMA ** 2))
                      for i in range(SSIM_WINDOW)], device=x.device)
    g = (g / g.sum()).unsqueeze(1)
    window = g.mm(g.t()).expand(C, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, padding=SSIM_WINDOW // 2, groups=C)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / \
        ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim_map.mean()


# torchvision's ImageNet weights of the perceptual metrics' backbones (their file names in
# torch's hub cache, where torchvision looks before downloading).
BACKBONES = {'lpips': 'alexnet-owt-7be5be79.pth', 'dists': 'vgg16-397923af.pth'}


def backbone_file(metric: str, weights: Optional[str]) -> str:
    """The backbone weights of 'lpips' or 'dists': `weights` (a file or folder), else torch's
    hub cache; ValueError in one line where there are none (they download at run time)."""
    name = BACKBONES[metric]
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints')
    path = weights or cache
    path = os.path.join(path, name) if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise ValueError(f"{metric} needs torchvision's ImageNet backbone {name}, which "
                         f"torchvision downloads at run time and is not at {path}; get it on "
                         f"a machine with internet (torch hub cache) and pass its file or "
                         f"folder with --metric-weights, or put it in {cache}")
    return path


def perceptual(metric: str, weights: Optional[str], device: torch.device,
               ) -> Callable[[torch.Tensor, torch.Tensor, Protocol], torch.Tensor]:
    """LPIPS (AlexNet) or DISTS (VGG16) of torchmetrics on the backbone of backbone_file:
    (B, 3, H, W) outputs and ground truths in [0, 1], a Protocol (8-bit outputs or not, the
    border cropped; always RGB) -> (B,) distances (lower is closer)."""
    try:
        from torchmetrics.functional.image import dists as dists_module  # noqa: F401
        from torchmetrics.functional.image.lpips import _NoTrainLpips
    except ImportError:
        raise ValueError(f"{metric} needs torchmetrics (pip install torchmetrics)") from None
    path = backbone_file(metric, weights)
    state = torch.load(path, map_location='cpu', weights_only=True)
    if metric == 'lpips':
        net = _NoTrainLpips(net='alex', pnet_rand=True)  # its heads; the backbone loaded here
        features = {k[len('features.'):]: v for k, v in state.items()
                    if k.startswith('features.')}
        for name, p in net.net.named_parameters():  # slice<k>.<index>.<weight|bias>
            p.data.copy_(features['.'.join(name.split('.')[1:])])
        net = net.to(device).eval()

        def lpips(sr, hr, protocol):
            return net(rgb01(sr, protocol) * 2 - 1, rgb01(hr, protocol) * 2 - 1).flatten()
        return lpips
    with _hub_holding(path, BACKBONES[metric]):  # DISTS always asks torchvision for VGG16
        net = dists_module.DISTSNetwork().to(device).eval()
    return lambda sr, hr, protocol: net(rgb01(sr, protocol), rgb01(hr, protocol)).flatten()


def rgb01(img: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """What a perceptual metric sees: (B, 3, H, W) RGB in [0, 1], 8-bit values if the
    protocol quantises, the border cropped."""
    img = (img * 255).round() / 255 if protocol.quantise else img
    return crop(img, protocol.border).float()


class _hub_holding:
    """torch's hub folder, for the block, a temporary one that holds `path` as `name` (what
    torchvision loads instead of downloading)."""

    def __init__(self, path: str, name: str):
        self.folder = tempfile.TemporaryDirectory()
        os.makedirs(os.path.join(self.folder.name, 'checkpoints'))
        os.symlink(os.path.abspath(path), os.path.join(self.folder.name, 'checkpoints', name))

    def __enter__(self):
        self.hub = torch.hub.get_dir()
        torch.hub.set_dir(self.folder.name)

    def __exit__(self, *exc):
        torch.hub.set_dir(self.hub)
        self.folder.cleanup()


METRICS = ('psnr', 'ssim', 'lpips', 'dists')


def parse_metrics(text: str) -> tuple:
    """'psnr,ssim' -> ('psnr', 'ssim'): known names, each once (argparse type)."""
    names = tuple(n.strip().lower() for n in text.split(','))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"metrics must be distinct names of {', '.join(METRICS)}"
                                         f", e.g. psnr,ssim; got '{text}'")
    return names

