"""Time the reference and fast LIIF query paths side by side, with the official checkpoint.

For each scale, the same input is encoded once and decoded by both paths (same process,
warm-up, median of --repeats runs). Prints seconds, output megapixels per second, peak memory,
the speed-up and the max abs difference, plus the machine's measured fp32 GEMM throughput and
the fraction of it each path reaches (from its multiply-accumulates per output pixel).

Example:
  python scripts/bench_inference.py --model pretrained/edsr-baseline-liif.pth \\
      --size 48 --scales 2 4 8 30 --device cpu
"""
import argparse
import os

os.environ.setdefault('KINETO_LOG_LEVEL', '5')  # quiet the profiler used for CPU peak memory
import statistics
import sys
import time
from typing import Callable, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402
from utils import PRECISIONS, autocast, load_checkpoint, make_coord, resolve_device  # noqa: E402
from utils.coords import make_cell  # noqa: E402

def timed(fn: Callable, repeats: int, device: torch.device):
    """(median seconds, last result) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def peak_memory_mb(fn: Callable, device: torch.device) -> float:
    """Peak memory of one call: CUDA allocator peak, or the CPU allocations traced by
    torch's profiler (the process RSS high-water mark cannot be reset between paths)."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    # Walk allocation events in time order to get the running peak.
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0),
                    key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2 ** 20


def gemm_gflops(device: torch.device, dtype: torch.dtype, d: int = 256) -> float:
    """Best throughput of the decoder's own GEMM shape, (n x d) @ (d x d), over a few n."""
    best = 0.0
    for n in (1024, 4096, 16384, 32768):
        a = torch.randn(n, d, device=device, dtype=dtype)
        b = torch.randn(d, d, device=device, dtype=dtype)
        seconds, _ = timed(lambda: a @ b, 20, device)
        best = max(best, 2 * n * d * d / seconds / 1e9)
    return best


def macs_per_pixel(model, scale: float, impl: str) -> float:
    """Multiply-accumulates per output pixel of the decoder (encoder excluded)."""
    linears = [m for m in model.imnet.layers if isinstance(m, torch.nn.Linear)]
    n_ensemble = 4 if model.local_ensemble else 1
    later = sum(l.in_features * l.out_features for l in linears[1:])
    first = linears[0]
    if impl == 'reference':
        return n_ensemble * (first.in_features * first.out_features + later)
    n_small = first.in_features - (model.encoder.out_dim * (9 if model.feat_unfold else 1))
    conv = (first.in_features - n_small) * first.out_features / scale ** 2  # once per code
    return n_ensemble * (n_small * first.out_features + later) + conv


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='pretrained/edsr-baseline-liif.pth',
                        help='LIIF checkpoint (default: %(default)s)')
    parser.add_argument('--size', type=int, default=48, help='input side in pixels (default: 48)')
    parser.add_argument('--scales', type=float, nargs='+', default=[2, 4, 8, 30],
                        help='output scales (default: 2 4 8 30)')
    parser.add_argument('--chunk', type=int, default=30000,
                        help='queries per chunk (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs (default: 3)')
    parser.add_argument('--precision', choices=sorted(PRECISIONS), nargs='+', default=['fp32'],
                        help='precisions of the fast path to time (default: fp32)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = models.make(load_checkpoint(args.model)['model'], load_sd=True).to(device).eval()
    torch.manual_seed(0)
    inp = torch.rand(1, 3, args.size, args.size, device=device) * 2 - 1

    gflops = gemm_gflops(device, torch.float32)
    print(f'device: {device}, threads: {torch.get_num_threads()}, input {args.size}x{args.size}, '
          f'chunk {args.chunk}; best fp32 GEMM (n x 256 @ 256 x 256): {gflops:.1f} GFLOP/s')
    print('| scale | output | path | seconds | MP/s | peak MB | speed-up | max abs diff | '
          '% of fp32 GEMM |')
    print('|---|---|---|---|---|---|---|---|---|')
    with torch.no_grad():
        feat = model.encode(inp)
        for scale in args.scales:
            H = W = round(args.size * scale)
            coord = make_coord((H, W), device=device).unsqueeze(0)
            cell = make_cell(coord, (H, W))
            runs = [('reference', 'fp32')] + [('fast', p) for p in args.precision]
            base_time = base_out = None
            for impl, precision in runs:
                def run(impl=impl, precision=precision):
                    with autocast(device, precision):
                        return models.query_in_chunks(model, feat, coord, cell, args.chunk,
                                                      impl=impl).float()
                seconds, out = timed(run, args.repeats, device)
                peak = peak_memory_mb(run, device)
                if base_time is None:
                    base_time, base_out = seconds, out
                mp_s = H * W / seconds / 1e6
                reached = 2 * macs_per_pixel(model, scale, impl) * H * W / seconds / 1e9 / gflops
                print(f'| x{scale:g} | {H}x{W} | {impl} {precision} | {seconds:.3f} | {mp_s:.3f} | '
                      f'{peak:.0f} | {base_time / seconds:.2f}x | '
                      f'{(out - base_out).abs().max().item():.2e} | {100 * reached:.0f}% |',
                      flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
