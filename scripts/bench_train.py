"""Training speed of a config: iterations per second and peak memory on the current device.

Builds the config's model and optimizer and times full training steps (forward, L1 loss,
backward, Adam) on random batches of the config's shape (batch_size, inp_size, sample_q), so
it needs no data set. The first --warmup steps are not timed.

With --loader N it also times the config's own training data loader alone (N batches after
one untimed, --num-workers processes as train_liif.py uses them: 4 on CUDA, 0 on a CPU by
default) and prints its samples/s and whether it keeps up with the step: the share of an
iteration the loader would take, were it not overlapped with the step.

Examples:
  python scripts/bench_train.py --config configs/train-div2k/train_edsr-baseline-liif.yaml \\
      --device cpu --steps 10
  python scripts/bench_train.py --config configs/train-t91/train_t91_small-liif.yaml \\
      --data-root ../shared/data --loader 20
"""
import argparse
import os
import resource
import sys
import time
from typing import List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402
from training import make_loader, train_step  # noqa: E402
from utils import resolve_device  # noqa: E402
from utils.config import apply_overrides, load_config, reroot, require  # noqa: E402
from inference import normalisers  # noqa: E402
from utils.training import Distributed, make_optimizer  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--steps', type=int, default=10, help='timed steps (default: 10)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps (default: 2)')
    parser.add_argument('--impl', choices=['fast', 'reference'], default='fast',
                        help='query path (default: %(default)s)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (float16 autocast + grad scaling), CUDA only')
    parser.add_argument('--loader', type=int, default=0, metavar='N',
                        help='also time N batches of the config\'s data loader alone (default: 0, '
                             'off)')
    parser.add_argument('--num-workers', type=int, default=None,
                        help='loader processes (default: 4 on CUDA, 0 on CPU, as train_liif.py)')
    parser.add_argument('--data-root', default=os.environ.get('LIIF_DATA_ROOT'),
                        help='folder that replaces ./load in the config (for --loader)')
    parser.add_argument('--set', dest='overrides', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. train_dataset.batch_size=4')
    args = parser.parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    device = resolve_device(args.device)
    if args.amp and device.type != 'cuda':
        print('error: --amp needs a CUDA device', file=sys.stderr)
        return 2
    scaler = torch.amp.GradScaler('cuda') if args.amp else None
    spec = require(config, 'train_dataset', args.config)
    wrapper = spec['wrapper']['args']
    batch_size, inp_size = spec['batch_size'], wrapper['inp_size']
    sample_q = wrapper.get('sample_q')
    if sample_q is None:  # the `-fast` wrappers keep h*w HR pixels; the others all of the crop
        sample_q = inp_size ** 2 if spec['wrapper']['name'].endswith('-fast') else \
            round(inp_size * wrapper.get('scale_max', 1)) ** 2

    torch.manual_seed(0)
    model = models.make(config['model']).to(device).train()
    optimizer = make_optimizer(model.parameters(), config['optimizer'])
    norms = normalisers(config.get('data_norm'), device)
    batch = {'inp': torch.rand(batch_size, 3, inp_size, inp_size, device=device),
             'coord': torch.rand(batch_size, sample_q, 2, device=device) * 2 - 1,
             'cell': torch.full((batch_size, sample_q, 2), 2 / (inp_size * 2), device=device),
             'gt': torch.rand(batch_size, sample_q, 3, device=device)}
    for _ in range(args.warmup):
        train_step(model, batch, optimizer, norms, args.impl, scaler)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(model, batch, optimizer, norms, args.impl, scaler)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == 'cuda':
        peak = f'{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f} MB (CUDA allocator)'
    else:
        peak = f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (process RSS)'
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f'config: {args.config}\nmodel: {config["model"]["name"]}, {n_params:.2f}M parameters; '
          f'batch {batch_size} x {inp_size}x{inp_size} LR, {sample_q} queries; impl {args.impl}'
          f'{", amp" if args.amp else ""}\n'
          f'device: {device}, threads: {torch.get_num_threads()}\n'
          f'iterations/s: {args.steps / seconds:.3f} ({seconds / args.steps:.3f} s each)\n'
          f'peak memory: {peak}')
    if args.loader:
        workers = args.num_workers if args.num_workers is not None else \
            (4 if device.type == 'cuda' else 0)
        try:
            loader_seconds = time_loader(reroot(config, args.data_root), args.config, args.loader,
                                         workers, device)
        except (OSError, ValueError, KeyError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
        step, load = seconds / args.steps, loader_seconds / args.loader
        print(f'loader: {batch_size / load:.1f} samples/s ({load:.3f} s a batch, {workers} '
              f'workers); {"keeps up with" if load <= step else "slower than"} the step; '
              f'{100 * load / (load + step):.0f}% of an iteration if not overlapped')
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
