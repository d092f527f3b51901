"""SwinIR (Liang et al., ICCVW 2021) as the encoder of LTE: the official `models/swinir.py`
of jaewon-lee-b/lte, with its layout and key names.

Shallow 3x3 conv, residual Swin Transformer blocks (window attention, every other block on
windows shifted by half a window), a 3x3 conv and a residual, then a 3x3 conv to 64 channels
(the latent codes) and LeakyReLU: the 'none' upsampler, the only one LTE uses.

Official quirk kept: the input is reflect-padded to a multiple of the window and the output is
not cropped back, so an h x w input gives codes on the padded grid (LTE's test.py pads the
input itself with --window and crops its output).
"""
import logging
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .models import register

logger = logging.getLogger(__name__)
CODE_DIM = 64                 # channels of the latent codes (the official num_feat)
MASK_VALUE = -100.0           # attention logit added between tokens of different regions
INIT_STD = 0.02               # truncated-normal init of linear layers and position biases


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C) windows, row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """Inverse of window_partition: -> (B, H, W, C)."""
    B = windows.shape[0] // ((H // ws) * (W // ws))
    x = windows.view(B, H // ws, W // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into the (2ws-1)^2 relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij'))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shifted_window_mask(H: int, W: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) mask of shifted-window attention: 0 within a region, MASK_VALUE
    across the regions that the cyclic shift brought together."""
    img_mask = torch.zeros(1, H, W, 1)
    region = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for ws_ in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img_mask[:, hs, ws_, :] = region
            region += 1
    windows = window_partition(img_mask, ws).view(-1, ws * ws)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, MASK_VALUE).masked_fill(diff == 0, 0.0)


def stochastic_depth(p: float) -> nn.Module:
    """Drop-path of rate p (timm's DropPath): torchvision's StochasticDepth('row'), imported
    here because torchvision.ops costs over a second of start-up to every script."""
    if p <= 0:
        return nn.Identity()
    from torchvision.ops import StochasticDepth
    return StochasticDepth(p, 'row')


class WindowAttention(nn.Module):
    """Multi-head self-attention within ws x ws windows, with relative position bias."""

    def __init__(self, dim: int, ws: int, num_heads: int, qkv_bias: bool,
                 qk_scale: Optional[float], attn_drop: float, proj_drop: float):
        super().__init__()
        self.ws, self.num_heads = ws, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * ws - 1) ** 2, num_heads))
        # Persistent: the official checkpoints carry it.
        self.register_buffer('relative_position_index', relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=INIT_STD)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B*nW, N, C) window tokens, (nW, N, N) mask or None -> (B*nW, N, C)."""
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B_, N, C)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention and an MLP, each with a pre-norm and a residual."""

    def __init__(self, dim: int, input_resolution: Tuple[int, int], num_heads: int, ws: int,
                 shift: int, mlp_ratio: float, qkv_bias: bool, qk_scale: Optional[float],
                 drop: float, attn_drop: float, drop_path: float):
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        if min(self.input_resolution) <= ws:  # the window covers the image: no shift
            shift, ws = 0, min(self.input_resolution)
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = stochastic_depth(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        mask = shifted_window_mask(*self.input_resolution, ws, shift) if shift > 0 else None
        self.register_buffer('attn_mask', mask)  # persistent: in the official checkpoints

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int]) -> torch.Tensor:
        H, W = x_size
        B, _, C = x.shape
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        mask = None
        if self.shift > 0:
            mask = self.attn_mask if tuple(x_size) == self.input_resolution else \
                shifted_window_mask(H, W, self.ws, self.shift).to(x.device)
        windows = self.attn(window_partition(x, self.ws).view(-1, self.ws * self.ws, C), mask)
        x = window_reverse(windows.view(-1, self.ws, self.ws, C), self.ws, H, W)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(B, H * W, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """`depth` Swin blocks, every other one shifted by half a window."""

    def __init__(self, depth: int, ws: int, drop_path: Sequence[float], use_checkpoint: bool,
                 **block_args):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(ws=ws, shift=0 if i % 2 == 0 else ws // 2,
                                 drop_path=drop_path[i], **block_args) for i in range(depth)])

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, x_size, use_reentrant=False) if self.use_checkpoint \
                else block(x, x_size)
        return x


def conv_block(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group: one 3x3 conv, or the '3conv' bottleneck."""
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
                             nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"unknown resi_connection '{resi_connection}'; expected 1conv or 3conv")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a conv, and a residual."""

    def __init__(self, dim: int, resi_connection: str, **layer_args):
        super().__init__()
        self.residual_group = BasicLayer(dim=dim, **layer_args)
        self.conv = conv_block(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, x_size)
        y = self.conv(y.transpose(1, 2).reshape(x.shape[0], -1, *x_size))
        return y.flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens, layer-normalised when `norm` is set."""

    def __init__(self, dim: int, norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return x if self.norm is None else self.norm(x)


class SwinIR(nn.Module):
    """SwinIR feature extractor; see `make_swinir` for the arguments."""

    def __init__(self, img_size: int, in_chans: int, embed_dim: int, depths: Sequence[int],
                 num_heads: Sequence[int], window_size: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: Optional[float], drop_rate: float, attn_drop_rate: float,
                 drop_path_rate: float, ape: bool, patch_norm: bool, use_checkpoint: bool,
                 resi_connection: str):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"swinir: depths {list(depths)} and num_heads {list(num_heads)} "
                             "must have one entry per residual group")
        self.window_size = window_size
        self.out_dim = CODE_DIM
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, img_size * img_size, embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=INIT_STD)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(drop_rate)
        # Stochastic depth grows linearly over all blocks (training only).
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(RSTB(
                embed_dim, resi_connection, depth=depth, ws=window_size,
                drop_path=dpr[start:start + depth], use_checkpoint=use_checkpoint,
                input_resolution=(img_size, img_size), num_heads=heads, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = conv_block(embed_dim, resi_connection)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, CODE_DIM, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))
        self.apply(_init_weights)

    def pad_to_window(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pads (B, C, h, w) on the bottom and right to a multiple of the window."""
        h, w = x.shape[-2:]
        ws = self.window_size
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_h >= h or pad_w >= w:  # reflection cannot reach that far
            raise ValueError(f"swinir: a {h}x{w} input cannot be reflect-padded to a multiple "
                             f"of window_size {ws}; each side needs more pixels than the "
                             f"padding it gets (at least {ws // 2 + 1}, or a multiple of {ws})")
        return F.pad(x, (0, pad_w, 0, pad_h), 'reflect')

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = tuple(x.shape[-2:])
        tokens = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            tokens = tokens + self.absolute_pos_embed
        tokens = self.pos_drop(tokens)
        for layer in self.layers:
            tokens = layer(tokens, x_size)
        return self.norm(tokens).transpose(1, 2).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised image -> (B, 64, h', w') codes, h' and w' the next
        multiples of the window (not cropped back, as in the official code)."""
        x = self.conv_first(self.pad_to_window(x))
        x = self.conv_after_body(self.forward_features(x)) + x
        return self.conv_before_upsample(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=INIT_STD)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


@register('swinir')
def make_swinir(no_upsampling: bool = True, img_size: int = 48, patch_size: int = 1,
                in_chans: int = 3, embed_dim: int = 180, depths: Sequence[int] = (6,) * 6,
                num_heads: Sequence[int] = (6,) * 6, window_size: int = 8, mlp_ratio: float = 2.,
                qkv_bias: bool = True, qk_scale: Optional[float] = None, drop_rate: float = 0.,
                attn_drop_rate: float = 0., drop_path_rate: float = 0.1, ape: bool = False,
                patch_norm: bool = True, use_checkpoint: bool = False, upscale: int = 2,
                img_range: float = 1., upsampler: str = 'none', resi_connection: str = '1conv',
                encoder_spec=None, imnet_spec=None) -> SwinIR:
    """SwinIR encoder with the official LTE defaults (embed_dim 180, 6 groups of 6 blocks with
    6 heads, window 8, mlp_ratio 2, no upsampler), official argument names.

    img_size sets the resolution at which the shifted-window masks are stored (other sizes
    compute theirs on the fly); upscale and img_range are accepted and unused, as officially.
    encoder_spec and imnet_spec are accepted and ignored, as the official code does: its
    train_swinir-liif.yaml names the model `swinir` with them and builds a bare SwinIR. For
    LIIF with a SwinIR encoder, name the model `liif` (our configs/train-div2k does).
    """
    if not no_upsampling or upsampler != 'none':
        raise ValueError("swinir is built as an encoder (no_upsampling: true, upsampler 'none', "
                         f"as LTE uses it); got no_upsampling={no_upsampling}, "
                         f"upsampler='{upsampler}'")
    if patch_size != 1:
        raise ValueError(f"swinir: patch_size must be 1 (one token per pixel), got {patch_size}")
    if encoder_spec is not None or imnet_spec is not None:
        logger.warning("model 'swinir' ignores encoder_spec and imnet_spec (as the official "
                       "code does) and builds a bare SwinIR; for LIIF on SwinIR name the "
                       "model 'liif' with encoder_spec {name: swinir}")
    return SwinIR(img_size, in_chans, embed_dim, list(depths), list(num_heads), window_size,
                  mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, ape,
                  patch_norm, use_checkpoint, resi_connection)
