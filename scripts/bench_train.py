"""Training speed of a config: iterations per second, peak memory, and the projected time of
the config's whole recipe on the current device.

Builds the config's model and optimizer and times full training steps (forward, L1 loss,
backward, optimizer) with the speed-ups train_liif.py would use (the same flags and 'auto'
defaults) on random batches of the config's shape (batch_size, inp_size, sample_q), so it
needs no data set. The first --warmup steps (and torch.compile's compiling) are not timed.

With --loader N it also times the config's own training data loader alone (N batches after
one untimed, --num-workers processes as train_liif.py uses them: 4 on CUDA, 0 on a CPU by
default): its samples/s, and the share of an iteration the step would wait for data.

The projection: epoch_max x ceil(samples per epoch / batch_size) iterations at the measured
rate (the slower of the step and the loader, with --loader). Samples per epoch come from the
config's image folder where it exists, else from the official size of DIV2K's training set
(800 images).

Examples:
  python scripts/bench_train.py --config configs/train-div2k/train_edsr-baseline-liif.yaml \\
      --device cpu --steps 10
  python scripts/bench_train.py --config configs/train-div2k/train_edsr-baseline-liif.yaml \\
      --device cpu --amp --compile on
  python scripts/bench_train.py --config configs/train-t91/train_t91_small-liif.yaml \\
      --data-root ../shared/data --loader 20
"""
import argparse
import math
import os
import resource
import sys
import time
from typing import Any, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402
import models  # noqa: E402
from utils.devices import print_precision_note  # noqa: E402
from utils.normalization import normalisers  # noqa: E402
from training import (TrainStep, add_step_arguments, make_loader,  # noqa: E402
                      step_options_from_args)
from utils import resolve_device  # noqa: E402
from utils.cli import (DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, ArgumentParser,  # noqa: E402
                       num_workers, number, run_main)
from utils.config import apply_overrides, load_config, reroot, require  # noqa: E402
from training import Distributed, make_optimizer  # noqa: E402

# Training images of the official data sets, by the folder the configs name (for projecting
# a recipe where the data set is not on this machine).
OFFICIAL_SIZES = {'DIV2K_train_HR': 800}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--steps', type=number(int, 1), default=10,
                        help='timed steps (default: 10)')
    parser.add_argument('--warmup', type=number(int, 0), default=2,
                        help='untimed steps (default: 2)')
    parser.add_argument('--loader', type=number(int, 0), default=0, metavar='N',
                        help="also time N batches of the config's data loader alone "
                             "(default: 0, off)")
    for names, spec in (DEVICE, DATA_ROOT, NUM_WORKERS, OVERRIDES):  # the loader's data
        parser.add_argument(*names, **spec)
    add_step_arguments(parser)  # as train_liif.py, with its 'auto' defaults
    args = parser.parse_args(argv)
    for name in ('steps', 'warmup', 'loader'):
        if getattr(args, name) < (1 if name == 'steps' else 0):
            parser.error(f"--{name} must be >= {1 if name == 'steps' else 0}, got "
                         f"{getattr(args, name)}")
    return args


def random_batch(spec: Dict[str, Any], device: torch.device) -> Dict[str, torch.Tensor]:
    """A batch of the shape a train_dataset spec gives (flat queries), random values."""
    wrapper = spec['wrapper']['args']
    batch_size, inp_size = spec['batch_size'], wrapper['inp_size']
    sample_q = wrapper.get('sample_q')
    if sample_q is None:  # the `-fast` wrappers keep h*w HR pixels; the others all of the crop
        sample_q = inp_size ** 2 if spec['wrapper']['name'].endswith('-fast') else \
            round(inp_size * wrapper.get('scale_max', 1)) ** 2
    g = torch.Generator().manual_seed(0)
    return {k: v.to(device) for k, v in {
        'inp': torch.rand(batch_size, 3, inp_size, inp_size, generator=g),
        'coord': torch.rand(batch_size, sample_q, 2, generator=g) * 2 - 1,
        'cell': torch.full((batch_size, sample_q, 2), 2 / (inp_size * 2)),
        'gt': torch.rand(batch_size, sample_q, 3, generator=g)}.items()}


def iterations_of_recipe(config: Dict[str, Any], data_root: Optional[str]) -> Optional[int]:
    """epoch_max x batches per epoch of the config's training set (None if unknown)."""
    spec = reroot(config, data_root)['train_dataset']
    args = spec['dataset'].get('args', {})
    root = args.get('root_path')
    if root is None:
        return None
    if os.path.isdir(root):
        n = len(datasets.make({'name': spec['dataset']['name'], 'args': {**args, 'cache': 'none'}}))
    elif os.path.basename(os.path.normpath(root)) in OFFICIAL_SIZES:
        n = OFFICIAL_SIZES[os.path.basename(os.path.normpath(root))]
        n = min(n, args.get('first_k') or n) * args.get('repeat', 1)
    else:
        return None
    return config['epoch_max'] * math.ceil(n / spec['batch_size'])


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


def bench(args: argparse.Namespace) -> int:
    """Times the step (and the loader), prints the report."""
    config = apply_overrides(load_config(args.config), args.overrides)
    device = resolve_device(args.device)
    options, fused = step_options_from_args(args, device)
    print_precision_note(device, options.precision)
    spec = require(config, 'train_dataset', args.config)
    batch = random_batch(spec, device)
    torch.manual_seed(0)
    model = models.make(config['model']).to(device).train()
    optimizer = make_optimizer(model.parameters(), config['optimizer'], fused=fused)
    step = TrainStep(model, optimizer, normalisers(config.get('data_norm'), device), options)
    for _ in range(max(args.warmup, 1 if options.compile else 0)):
        step(batch)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(batch)
    loss.item()  # waits for the last step
    seconds = (time.perf_counter() - start) / args.steps
    if device.type == 'cuda':
        peak = f'{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f} MB (CUDA allocator)'
    else:
        peak = f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (process RSS)'
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    B, Q = batch['coord'].shape[:2]
    compiled = '' if step.compile_seconds is None else \
        f' (compiled in {step.compile_seconds:.1f} s)'
    print(f'config: {args.config}\nmodel: {config["model"]["name"]}, {n_params:.2f}M parameters; '
          f'batch {B} x {batch["inp"].shape[-1]}x{batch["inp"].shape[-1]} LR, {Q} queries\n'
          f'step: {options}, fused optimizer: {fused}{compiled}\n'
          f'device: {device}, threads: {torch.get_num_threads()}\n'
          f'iterations/s: {1 / seconds:.3f} ({seconds:.4f} s each)\n'
          f'peak memory: {peak}')
    iteration = seconds
    if args.loader:
        workers = num_workers(args, device.type)
        load = time_loader(reroot(config, args.data_root), args.config, args.loader,
                           workers, device) / args.loader
        iteration = max(seconds, load)
        print(f'loader: {B / load:.1f} samples/s ({load:.4f} s a batch, {workers} workers); '
              f'{"keeps up with" if load <= seconds else "slower than"} the step; '
              f'data wait {100 * max(load - seconds, 0) / iteration:.0f}% of an iteration '
              f'(loading overlapped with the step), {100 * load / (load + seconds):.0f}% '
              'if not overlapped')
    iterations = iterations_of_recipe(config, args.data_root)
    if iterations is not None:
        print(f'projected recipe: {iterations} iterations ({config["epoch_max"]} epochs) in '
              f'{iterations * iteration / 3600:.1f} h at {1 / iteration:.2f} it/s')
    return 0


def time_loader(config, source: str, batches: int, workers: int, device: torch.device) -> float:
    """Seconds for `batches` batches of the config's training loader (after one untimed)."""
    loader = make_loader(require(config, 'train_dataset', source), f'{source}: train_dataset',
                         True, Distributed(), workers, device, 0)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
    return time.perf_counter() - start


if __name__ == '__main__':
    sys.exit(main())
