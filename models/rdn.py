"""RDN encoder (Zhang et al. 2018), with the official LIIF module layout and key names."""
from types import SimpleNamespace

import torch
from torch import nn

from .models import register

# RDNconfig -> (number of RDBs D, conv layers per RDB C, growth rate G)
RDN_CONFIGS = {'A': (20, 6, 32), 'B': (16, 8, 64)}


class RDB_Conv(nn.Module):  # official class name
    def __init__(self, in_channels: int, grow_rate: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, grow_rate, kernel_size,
                                            padding=(kernel_size - 1) // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: densely connected convs, then 1x1 local feature fusion."""

    def __init__(self, grow_rate0: int, grow_rate: int, n_conv_layers: int):
        super().__init__()
        self.convs = nn.Sequential(*[RDB_Conv(grow_rate0 + c * grow_rate, grow_rate)
                                     for c in range(n_conv_layers)])
        self.LFF = nn.Conv2d(grow_rate0 + n_conv_layers * grow_rate, grow_rate0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    def __init__(self, args: SimpleNamespace):
        super().__init__()
        self.args = args
        r, G0, k = args.scale, args.G0, args.RDNkSize
        if args.RDNconfig not in RDN_CONFIGS:
            raise ValueError(f"unknown RDNconfig '{args.RDNconfig}'; expected one of "
                             f"{sorted(RDN_CONFIGS)}")
        self.D, C, G = RDN_CONFIGS[args.RDNconfig]
        pad = (k - 1) // 2
        self.SFENet1 = nn.Conv2d(args.n_colors, G0, k, padding=pad)
        self.SFENet2 = nn.Conv2d(G0, G0, k, padding=pad)
        self.RDBs = nn.ModuleList([RDB(G0, G, C) for _ in range(self.D)])
        self.GFF = nn.Sequential(nn.Conv2d(self.D * G0, G0, 1), nn.Conv2d(G0, G0, k, padding=pad))
        if args.no_upsampling:
            self.out_dim = G0
        else:
            self.out_dim = args.n_colors
            if r in (2, 3):
                up = [nn.Conv2d(G0, G * r * r, k, padding=pad), nn.PixelShuffle(r)]
            elif r == 4:
                up = [nn.Conv2d(G0, G * 4, k, padding=pad), nn.PixelShuffle(2),
                      nn.Conv2d(G, G * 4, k, padding=pad), nn.PixelShuffle(2)]
            else:
                raise ValueError(f"RDN upsampling scale {r} is not supported; expected 2, 3 or 4")
            self.UPNet = nn.Sequential(*up, nn.Conv2d(G, args.n_colors, k, padding=pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised image -> (B, G0, h, w) features, or (B, 3, rh, rw)."""
        f_1 = self.SFENet1(x)
        x = self.SFENet2(f_1)
        rdb_outs = []
        for rdb in self.RDBs:
            x = rdb(x)
            rdb_outs.append(x)
        x = self.GFF(torch.cat(rdb_outs, 1)) + f_1
        return x if self.args.no_upsampling else self.UPNet(x)


@register('rdn')
def make_rdn(G0: int = 64, RDNkSize: int = 3, RDNconfig: str = 'B', scale: int = 2,
             no_upsampling: bool = False) -> RDN:
    """RDN with the official argument names (G0 features, config 'A' or 'B')."""
    return RDN(SimpleNamespace(G0=G0, RDNkSize=RDNkSize, RDNconfig=RDNconfig, scale=scale,
                               no_upsampling=no_upsampling, n_colors=3))
