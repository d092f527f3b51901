"""Training helpers: optimizers, RNG state, distributed set-up, run folders."""
import math
import os
import random
from typing import Any, Dict, Iterable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

OPTIMIZERS = {'sgd': torch.optim.SGD, 'adam': torch.optim.Adam}


def make_optimizer(params: Iterable[nn.Parameter], spec: Dict[str, Any],
                   load_sd: bool = False, fused: bool = False) -> torch.optim.Optimizer:
    """Optimizer from the official spec {'name': 'adam'|'sgd', 'args': {...}, 'sd': ...}.

    fused: PyTorch's fused implementation (one kernel for all parameters instead of a few per
    tensor; the same update to float rounding), unless the spec's args say otherwise.
    """
    if spec.get('name') not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{spec.get('name')}'; known: "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    args = dict(spec.get('args', {}))
    if fused:
        args.setdefault('fused', True)
    optimizer = OPTIMIZERS[spec['name']](params, **args)
    if load_sd:
        optimizer.load_state_dict(spec['sd'])
    return optimizer


def warmup_cosine(multiplier: float, total_epoch: int, epoch_max: int):
    """SRNO's `warmup_step_lr` schedule as a LambdaLR factor of the epochs done: the learning
    rate grows linearly from lr to multiplier * lr over total_epoch epochs, then follows a
    cosine to 0 over the remaining epochs (official GradualWarmupScheduler followed by
    CosineAnnealingLR, stepped once per epoch)."""
    if total_epoch < 1 or multiplier < 1:
        raise ValueError(f"warmup_step_lr needs total_epoch >= 1 and multiplier >= 1, got "
                         f"total_epoch={total_epoch}, multiplier={multiplier}")
    cosine_epochs = max(epoch_max - total_epoch, 1)

    def factor(done: int) -> float:
        if done <= total_epoch:
            return (multiplier - 1) * done / total_epoch + 1
        if done == total_epoch + 1:  # the official schedulers hand over one epoch late
            return multiplier
        return multiplier * (1 + math.cos(math.pi * (done - total_epoch) / cosine_epochs)) / 2
    return factor


def make_scheduler(config: Dict[str, Any], optimizer: torch.optim.Optimizer):
    """The config's per-epoch learning-rate schedule: `multi_step_lr` (LIIF, LTE),
    `warmup_step_lr` (SRNO), or None (constant)."""
    if config.get('multi_step_lr') is not None:
        if config.get('warmup_step_lr') is not None:
            raise ValueError("give multi_step_lr or warmup_step_lr, not both")
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, **config['multi_step_lr'])
    if config.get('warmup_step_lr') is not None:
        factor = warmup_cosine(epoch_max=config['epoch_max'], **config['warmup_step_lr'])
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return None


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices) once, in `main`."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Gives each DataLoader worker its own Python/NumPy streams, derived from torch's seed."""
    seed = torch.initial_seed() % 2 ** 32
    random.seed(seed)
    np.random.seed(seed)


def rng_state() -> Dict[str, Any]:
    """All RNG states, for checkpoints (tensors and plain Python values only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # NumPy's key array goes in as a tensor: checkpoints load with weights_only=True.
    state = {'python': random.getstate(),
             'numpy': (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(_as_python_state(state['python']))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_python_state(state):
    """random.getstate() comes back from a checkpoint with lists for tuples."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


class Distributed:
    """The process's place in a torchrun launch (world size 1 without torchrun)."""

    def __init__(self):
        self.world_size = int(os.environ.get('WORLD_SIZE', 1))
        self.rank = int(os.environ.get('RANK', 0))
        self.local_rank = int(os.environ.get('LOCAL_RANK', 0))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        if self.enabled:
            dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel, or the model itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_over_ranks(value: float, n: float, device: torch.device,
                    distributed: Optional[Distributed]) -> float:
    """Weighted mean of a per-rank average across ranks."""
    if distributed is None or not distributed.enabled:
        return value
    t = torch.tensor([value * n, n], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t[0] / t[1]).item()
