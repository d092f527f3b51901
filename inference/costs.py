"""What a model needs in memory, measured, not guessed: each step runs once on a small probe
while a dispatch mode tracks every tensor storage the step allocates and frees (the same count
on CPU and GPU; on a CPU a convolution's input is counted once more while it runs, for the
blocked copy oneDNN makes of it). All grow linearly with their pixels or queries, so the
probe's peak divided by its size gives the cost of any size (inference.plan uses them).
"""
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from models import ImplicitDecoder
from utils.devices import autocast

PROBE = 32          # side of the probe input (a multiple of SwinIR's window of 8)
PROBE_QUERIES = 2048


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created inside it and still alive; keeps the peak."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Left to its default, the first call imports torch._dynamo (about 150 MB and a second
        # and a half); nothing is compiled in here.
        return False

    def __init__(self, exclude: Iterable[int]):
        super().__init__()
        self.exclude = set(exclude)
        self.refs: Dict[int, list] = {}
        self.live = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.refs[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default and args[0].device.type == 'cpu':
            # oneDNN copies the input into its blocked layout while the convolution runs.
            self.peak = max(self.peak, self.live + args[0].nbytes + out.nbytes)
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in self.exclude:
                continue
            entry = self.refs.get(ptr)
            if entry is None:
                entry = self.refs[ptr] = [0, storage.nbytes()]
                self.live += entry[1]
                self.peak = max(self.peak, self.live)
            entry[0] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def peak_bytes(step: Callable[[], object], *keep: torch.Tensor,
               module: Optional[torch.nn.Module] = None) -> int:
    """Peak bytes of the tensors `step()` allocates (its result included), not counting the
    storages of `keep` and of `module`'s parameters and buffers."""
    exclude = [t.untyped_storage().data_ptr() for t in keep]
    if module is not None:
        exclude += [t.untyped_storage().data_ptr()
                    for t in (*module.parameters(), *module.buffers())]
    tracker = _LiveBytes(exclude)
    with torch.no_grad(), tracker:
        result = step()
        del result
    return tracker.peak


@dataclass(frozen=True)
class Costs:
    """Bytes a model needs: per input pixel in its encoder (peak activations, its output
    included), per latent code held (the codes) and per latent code for the decoder's features
    (e.g. LIIF's projections, or the reference path's unfolded codes made at each call), per
    query decoded at once (activations and the call's output), and its weights."""
    encoder_per_pixel: float
    code: float
    feature_per_code: float
    per_query: float
    weights: int = 0


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers."""
    return sum(t.nbytes for t in (*model.parameters(), *model.buffers()))


def measure_costs(model: ImplicitDecoder, impl: str = 'fast', precision: str = 'fp32',
                  device: Optional[torch.device] = None) -> Costs:
    """Runs each step of `model` once on small probes (see the module docstring): the
    encoder on a PROBE x PROBE input, the decoder on PROBE/2 and PROBE grids (what grows with
    the grid rather than the queries is a cost per code)."""
    device = device or next(model.parameters(), torch.zeros(())).device
    encoder = getattr(model, 'encoder', None)
    q = min(PROBE_QUERIES, model.fast_chunk_size or PROBE_QUERIES)
    # A private generator: measuring must not move the global RNG (training validates
    # between epochs, and its next batches must be the official trainer's).
    coord = torch.rand(1, q, 2, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    cell = torch.full((1, q, 2), 2 / (4 * PROBE), device=device)

    def probe(side: int):
        inp = torch.zeros(1, 3, side, side, device=device)
        if encoder is None:
            enc, codes = 0, None
        else:
            enc = peak_bytes(lambda: encoder(inp), inp, module=model)
            with torch.no_grad():
                codes = encoder(inp)

        def features():
            return model.encode(inp) if codes is None else model.from_codes(inp, codes)

        def decoder():
            return model.decoder(features(), impl)

        kept = (inp,) if codes is None else (inp, codes)
        setup = peak_bytes(decoder, *kept, module=model)
        with torch.no_grad():
            decode = decoder()

        def query():
            with autocast(device, precision):
                return decode(coord, cell)
        n = side * side
        code = 0 if codes is None else codes.nbytes / n
        return enc / n, code, setup / n, peak_bytes(query, coord, cell, *kept, module=model)

    _, _, _, small = probe(PROBE // 2)
    enc, code, setup, large = probe(PROBE)
    grid_part = max(0.0, (large - small) / (PROBE ** 2 - (PROBE // 2) ** 2))
    per_query = max(0.0, large - grid_part * PROBE ** 2) / q
    return Costs(enc, code, setup + grid_part, per_query, model_bytes(model))
