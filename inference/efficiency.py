"""What a model costs to run, measured as the efficiency tables of LMF, GSASR and GRAPE report
it: parameters, multiply-adds per output pixel (counted by torch's flop counter over the
matrix products and convolutions, not written by hand), latency (one warm-up, then the median
of repeats) and peak memory, for one render of a fixed input (LMF's: 320x180 -> x4, 1280x720)
through the renderer (encoder, decoder, normalisation, the memory plan's chunks).
"""
import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from .renderer import Renderer

LMF_INPUT = (180, 320)  # (h, w) of LMF's efficiency table, rendered x4
LMF_SCALE = 4


def timed(fn: Callable, repeats: int, device: torch.device):
    """(median seconds, last result) of `repeats` calls after one warm-up call."""
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


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 silenced: the profiler's C++ side prints a `profiler_start` and a
    `profiler_stop` line there around every profile, whatever KINETO_LOG_LEVEL says."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_mb(fn: Callable, device: torch.device) -> float:
    """Peak memory (MiB) allocated by one call beyond what was allocated before it: the CUDA
    allocator's peak, or on a CPU the allocations traced by torch's profiler (the process RSS
    high-water mark cannot be reset between calls)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    with _quiet_stderr(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0),
                    key=lambda e: e.time_range.start)  # the running total, in time order
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2 ** 20


def counted_flops(fn: Callable) -> float:
    """Floating-point operations of the matrix products and convolutions of one call
    (2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@dataclass
class Efficiency:
    """One model's row of an efficiency table, for an (h, w) input rendered at `scale`."""
    params: int
    macs_per_pixel: float
    seconds: float
    peak_mb: float
    input: Tuple[int, int]
    scale: int


def render(renderer: Renderer, image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) float32 CPU tensor: the whole output, assembled from the renderer's bands."""
    out = torch.empty(*size, 3)
    for row0, band in renderer.bands(image, size):
        out[row0:row0 + band.shape[0]] = band
    return out


@torch.no_grad()
def measure_efficiency(renderer: Renderer, device: torch.device, repeats: int = 5,
                       size: Tuple[int, int] = LMF_INPUT, scale: int = LMF_SCALE) -> Efficiency:
    """The renderer's model on a random (h, w) = `size` input rendered x`scale`, image to
    image (encoder included): parameters, multiply-adds per output pixel, median seconds of
    `repeats` renders after a warm-up, peak memory (MiB) of one render."""
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    out_size = (size[0] * scale, size[1] * scale)
    run = lambda: render(renderer, image, out_size)  # noqa: E731
    seconds, _ = timed(run, repeats, device)
    macs = counted_flops(run) / 2 / (out_size[0] * out_size[1])
    peak = peak_memory_mb(run, device)
    params = sum(p.numel() for p in renderer.model.parameters())
    return Efficiency(params, macs, seconds, peak, tuple(size), scale)
