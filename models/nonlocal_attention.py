"""Cross-scale non-local attention (Mei et al., CVPR 2020; CiaoSR's scale-aware non-local
branch, Sec. 3.3), in the official parameter layout (`cs_attn`): every 3x3 patch of the image
at half size is matched against every position at full size, and each position is rebuilt from
the matched patches' 6x6 full-size counterparts, one scale up, then brought back down.
Written from the paper and ../shared/reference/ciaosr's description.
"""
import torch
import torch.nn.functional as F
from torch import nn

# Scale of the matched patches, the match kernel, the softmax's sharpness, and the floor of a
# patch's norm (the official buffer `escape_NaN`).
SCALE = 2
KSIZE = 3
SOFTMAX_SCALE = 10
ESCAPE_NAN = 1e-4
# Bytes of one block of match scores (every patch against a block of rows of positions): the
# branch's memory is this, not the (h w)^2 / 4 scores of the whole image at once.
SCORE_BLOCK_BYTES = 64 << 20


def patches(x: torch.Tensor, k: int, stride: int, pad: int) -> torch.Tensor:
    """(C, H, W) -> (L, C, k, k): the k x k patches at `stride`, zero-padded by `pad`, in
    row-major order of their positions."""
    C = x.shape[0]
    cols = F.unfold(x.unsqueeze(0), k, padding=pad, stride=stride)    # (1, C*k*k, L)
    return cols[0].t().reshape(-1, C, k, k)


class CrossScaleAttention(nn.Module):
    """(B, C, h, w) features -> (B, C, h, w) non-local features (memory ~ (h w)^2 / 4 floats
    per image: it runs on the whole image, or on a tile of CiaoSR's tiled test)."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.register_buffer('escape_NaN', torch.tensor([ESCAPE_NAN]))
        self.conv_match_1 = nn.Sequential(nn.Conv2d(channels, half, 1), nn.PReLU())
        self.conv_match_2 = nn.Sequential(nn.Conv2d(channels, half, 1), nn.PReLU())
        self.conv_assembly = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.PReLU())
        self.down = nn.Conv2d(channels, channels, 3, stride=SCALE, padding=1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        h, w = feat.shape[-2:]
        x = F.pad(feat, (0, w % SCALE, 0, h % SCALE), 'reflect')   # even sides
        embed = self.conv_assembly(x)
        match = self.conv_match_1(x)
        small = self.conv_match_2(F.interpolate(x, scale_factor=1 / SCALE, mode='bilinear',
                                                align_corners=False))
        out = torch.stack([self.rebuild(match[i], small[i], embed[i])
                           for i in range(x.shape[0])])
        return out[..., :h, :w]

    def rebuild(self, match: torch.Tensor, small: torch.Tensor, embed: torch.Tensor,
                block_bytes: int = SCORE_BLOCK_BYTES) -> torch.Tensor:
        """One image: (C/2, H, W), (C/2, H/2, W/2), (C, H, W) -> (C, H, W).

        Each position's scores against the L patches, their softmax, and the transposed
        convolution that spreads its 6x6 patches one scale up are computed for blocks of rows
        of positions (block_bytes of scores each), summed into the 2H x 2W map: the same sums
        as over all positions at once, in bounded memory."""
        C, H, W = embed.shape
        keys = patches(small, KSIZE, 1, KSIZE // 2)                    # (L, C/2, 3, 3)
        norm = keys.flatten(1).norm(dim=1).clamp_min(self.escape_NaN).view(-1, 1, 1, 1)
        keys = keys / norm
        k, pad = SCALE * KSIZE, (SCALE * KSIZE - SCALE) // 2
        values = patches(embed, k, SCALE, pad)                          # (L, C, 6, 6)
        padded = F.pad(match, (1, 1, 1, 1)).unsqueeze(0)
        rows = max(1, block_bytes // (keys.shape[0] * W * match.element_size()))
        # Rows of the transposed convolution's output, `pad` above the map's first row.
        up = match.new_zeros(C, SCALE * H + 2 * pad, SCALE * W)
        for r0 in range(0, H, rows):
            r1 = min(H, r0 + rows)
            score = F.conv2d(padded[..., r0:r1 + 2, :], keys)
            score = torch.softmax(score * SOFTMAX_SCALE, dim=1)         # (1, L, r1 - r0, W)
            # The transposed convolution by the patches (stride 2), as one product and a
            # fold: each position's weighted sum of the L patches, placed 2 apart.
            n = r1 - r0
            cols = values.flatten(1).t() @ score.view(score.shape[1], n * W)  # (C*36, n*W)
            part = F.fold(cols.unsqueeze(0), (SCALE * n + 2 * pad, SCALE * W + 2 * pad), k,
                          stride=SCALE)[0, :, :, pad:pad + SCALE * W]
            up[:, SCALE * r0:SCALE * r0 + part.shape[1]] += part
        up = up[:, pad:pad + SCALE * H]
        return self.down(up.unsqueeze(0))[0] / (SCALE * KSIZE)
