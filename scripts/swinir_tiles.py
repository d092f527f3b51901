"""How far SwinIR's tiled codes are from its whole-image codes (the README's measurement).

Encodes an input whose sides are window multiples whole and in window-aligned tiles with
several halos, and prints the max abs difference of the codes and of the x4 render (in [0, 1],
with the PSNR between the two renders). SwinIR's shifted windows reach beyond any halo, so
tiles are close, not exact (see inference/tiling.py).

Example:
  python scripts/swinir_tiles.py --model configs/train-div2k/train_swinir-lte.yaml --size 96
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402
from inference import load_decoder, render_bands  # noqa: E402
from utils.coords import band_coords  # noqa: E402
from inference.tiling import encode_tiled  # noqa: E402
from utils.cli import ArgumentParser, number  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.image_io.read import read_image  # noqa: E402


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--model', required=True,
                        help='checkpoint, or a training config (random weights, seeded)')
    parser.add_argument('--size', type=number(int, 1), default=96,
                        help='input side (a window multiple)')
    parser.add_argument('--tile', type=number(int, 1), default=32, help='tile side in codes')
    parser.add_argument('--halos', type=number(int, 0), nargs='+', default=[8, 16, 32, 48])
    parser.add_argument('--image', default=None, help='input image (default: seeded noise)')
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model.endswith('.yaml'):
        model = models.make(load_config(args.model)['model']).eval()
    else:
        model = load_decoder(args.model, torch.device('cpu'))
    if args.image:
        rgb = torch.from_numpy(read_image(args.image).rgb).permute(2, 0, 1).unsqueeze(0)
        inp = rgb[..., :args.size, :args.size] * 2 - 1
    else:
        inp = torch.rand(1, 3, args.size, args.size) * 2 - 1
    size = (4 * args.size, 4 * args.size)
    with torch.no_grad():
        whole = model.encoder(inp)
        render = torch.cat([b for _, b in render_bands(model, inp * 0.5 + 0.5, size)])
    print('| halo | max abs diff, codes | max abs diff, x4 render | PSNR render vs whole (dB) |')
    print('|---|---|---|---|')
    for halo in args.halos:
        tiled = encode_tiled(model.encoder, inp, args.tile, halo=halo)
        feat = model.from_codes(inp, tiled)
        coord = band_coords(*size, 0, size[0], inp.device)
        cell = torch.tensor([2 / size[0], 2 / size[1]]).expand_as(coord)
        with torch.no_grad():
            pred = model.decoder(feat, 'fast')(coord, cell)
        out = (pred * 0.5 + 0.5).clamp(0, 1).view(*size, 3)
        mse = (out - render).pow(2).mean().item()
        psnr = float('inf') if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()
        print(f'| {halo} | {(tiled - whole).abs().max().item():.2e} | '
              f'{(out - render).abs().max().item():.2e} | {psnr:.1f} |')


if __name__ == '__main__':
    main()
