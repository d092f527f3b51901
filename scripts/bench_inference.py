"""Time the decoders side by side: each model's reference path, and its fast path where it
has one, in one process, through the renderer (its chunk policy, normalisation and precision).

--model takes checkpoints (.pth) and model specs: a YAML file holding {name, args} or a
training config (its `model`), built with random weights (speed does not depend on them).
For each model and scale, the same input is encoded once per path and decoded by it (warm-up,
median of --repeats runs; the encoder is not timed, nor the work done once per image and cell
before the first query: LIIF's per-code projections, LMF's modulations). Prints the decoder's
multiply-adds per output pixel (torch's flop counter over the matrix products and
convolutions of one whole render, that per-image work included, the encoder not), the queries
per decoder call (the device's chunk policy unless --chunk-size), seconds, output megapixels
per second, peak memory, the speed-up over the model's reference path, the max abs difference
from it, and the fraction of the machine's measured fp32 GEMM throughput each path reaches
(from the multiply-adds of one decode).

Examples:
  python scripts/bench_inference.py --model pretrained/edsr-baseline-liif.pth \\
      --size 48 --scales 2 4 8 30 --device cpu
  python scripts/bench_inference.py --scales 4 --model pretrained/edsr-baseline-liif.pth \\
      configs/train-div2k/train_edsr-baseline-lte.yaml configs/train-div2k/train_edsr-sronet.yaml
"""
import argparse
import os
import sys
from functools import partial
from typing import List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from inference import RenderOptions, Renderer  # noqa: E402
from inference.efficiency import counted_flops, peak_memory_mb, timed  # noqa: E402
from inference.loading import load_decoder_or_spec  # noqa: E402
from utils import PRECISIONS, make_coord, resolve_device  # noqa: E402
from utils.cli import DEVICE, ArgumentParser, number, run_main  # noqa: E402
from utils.coords import make_cell  # noqa: E402
from utils.devices import print_precision_note  # noqa: E402
from utils.normalization import OFFICIAL_NORM  # noqa: E402


def gemm_gflops(device: torch.device, dtype: torch.dtype, d: int = 256) -> float:
    """Best throughput of the decoder's own GEMM shape, (n x d) @ (d x d), over a few n."""
    best = 0.0
    for n in (1024, 4096, 16384, 32768):
        a = torch.randn(n, d, device=device, dtype=dtype)
        b = torch.randn(d, d, device=device, dtype=dtype)
        seconds, _ = timed(lambda: a @ b, 20, device)
        best = max(best, 2 * n * d * d / seconds / 1e9)
    return best


def rows_for(model, precisions: List[str], compile: bool):
    """(impl, precision, compile, label) of the paths to time: the reference in fp32, the fast
    path in each precision (a model without a fast path of its own runs the reference there),
    and with `compile` each of those under torch.compile (not for whole_grid models)."""
    runs = [('reference', 'fp32', False, 'reference fp32' if model.supports_fast else
             'reference fp32 (= fast fp32: no fast path of its own)')]
    for precision in precisions:
        label = f'fast {precision}' if model.supports_fast else \
            f'fast {precision} (no fast path: the reference)'
        if model.supports_fast or precision != 'fp32':  # else the very row above
            runs.append(('fast', precision, False, label))
        if compile and not model.whole_grid:
            runs.append(('fast', precision, True, f'{label} compiled'))
    return runs


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--model', nargs='+', default=['pretrained/edsr-baseline-liif.pth'],
                        help='checkpoints (.pth) or model specs (YAML: {name, args} or a '
                             'training config); default: %(default)s')
    parser.add_argument('--size', type=number(int, 1), default=48,
                        help='input side in pixels (default: 48)')
    parser.add_argument('--scales', type=number(float, 0, above=True), nargs='+',
                        default=[2, 4, 8, 30],
                        help='output scales (default: 2 4 8 30)')
    parser.add_argument('--chunk-size', '--chunk', dest='chunk_size', type=number(int, 1),
                        default=None,
                        help='most queries per call (default: the chunk policy of the device, '
                             'shown in the table)')
    parser.add_argument('--repeats', type=number(int, 1), default=3, help='timed runs (default: 3)')
    parser.add_argument('--precision', choices=sorted(PRECISIONS), nargs='+', default=['fp32'],
                        help='precisions of the fast path to time (default: fp32)')
    for names, spec in (DEVICE,):
        parser.add_argument(*names, **spec)
    parser.add_argument('--threads', type=number(int, 1), default=None, help='torch CPU threads')
    parser.add_argument('--compile', action='store_true',
                        help='also time each fast path under torch.compile (its compile time '
                             'is printed; the warm-up call compiles)')
    args = parser.parse_args(argv)
    return run_main(lambda: bench(args))


def bench(args: argparse.Namespace) -> int:
    """Prints the table."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for precision in dict.fromkeys(args.precision):
        print_precision_note(device, precision)
    loaded = [(source, load_decoder_or_spec(source, device)[0]) for source in args.model]
    torch.manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size, device=device)

    gflops = gemm_gflops(device, torch.float32)
    print(f'device: {device}, threads: {torch.get_num_threads()}, torch {torch.__version__}, '
          f'input {args.size}x{args.size}; best fp32 GEMM (n x 256 @ 256 x 256): '
          f'{gflops:.1f} GFLOP/s')
    print('| model | scale | output | path | MACs per pixel | queries per call | seconds | MP/s | '
          'peak MB | speed-up | max abs diff | % of fp32 GEMM |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for source, model in loaded:
        name = f"{os.path.join(*source.split(os.sep)[-2:])} ({type(model).__name__})"
        encoder = getattr(model, 'encoder', None)
        encoder_flops = counted_flops(lambda: encoder(image)) if encoder is not None else 0
        for scale in args.scales:
            H = W = round(args.size * scale)
            coord = make_coord((H, W), device=device).unsqueeze(0)
            cell = make_cell(coord, (H, W))
            base_time = base_out = None
            for impl, precision, compiled, label in rows_for(model, args.precision,
                                                             args.compile):
                renderer = Renderer(model, OFFICIAL_NORM, RenderOptions(
                    impl=impl, precision=precision, chunk_size=args.chunk_size,
                    compile=compiled))
                scene = renderer.scene(image)  # the encoder is not timed
                chunk = scene.chunk_size
                run = partial(scene.decode, coord, cell)
                if not compiled:  # a compiled row does the work of the row before it
                    whole = counted_flops(lambda: renderer.scene(image).decode(coord, cell))
                    macs = (whole - encoder_flops) / 2 / (H * W)
                    run()  # the per-image work (LMF makes its modulations on the first call)
                    flops = counted_flops(run)
                seconds, out = timed(run, args.repeats, device)
                peak = peak_memory_mb(run, device)
                if compiled:
                    label += f' ({scene.decode_fn.compile_seconds:.1f} s to compile)'
                if base_time is None:
                    base_time, base_out = seconds, out
                print(f'| {name} | x{scale:g} | {H}x{W} | {label} | {macs:,.0f} | '
                      f'{chunk or "all (whole grid)"} | {seconds:.3f} | '
                      f'{H * W / seconds / 1e6:.3f} | {peak:.0f} | {base_time / seconds:.2f}x | '
                      f'{(out - base_out).abs().max().item():.2e} | '
                      f'{100 * flops / seconds / 1e9 / gflops:.0f}% |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
