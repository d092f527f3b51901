"""The optimizer and the per-epoch learning-rate schedule of a training config."""
import math
from typing import Any, Dict, Iterable

import torch
from torch import nn

from utils.config import OPTIMIZER_ARG_NAMES

OPTIMIZERS = {'sgd': torch.optim.SGD, 'adam': torch.optim.Adam}
SCHEDULES = ('multi_step_lr', 'warmup_step_lr')


def make_optimizer(params: Iterable[nn.Parameter], spec: Dict[str, Any],
                   fused: bool = False) -> torch.optim.Optimizer:
    """Optimizer from the official spec {'name': 'adam'|'sgd', 'args': {...}}.

    fused: PyTorch's fused implementation (one kernel for all parameters instead of a few per
    tensor; the same update to float rounding), unless the spec's args say otherwise.
    """
    name = spec.get('name')
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}'; known: {', '.join(sorted(OPTIMIZERS))}")
    args = dict(spec.get('args') or {})
    for key in args:
        if key not in OPTIMIZER_ARG_NAMES[name]:
            raise ValueError(f"optimizer.args.{key}: not an argument of {name}; allowed: "
                             f"{', '.join(sorted(OPTIMIZER_ARG_NAMES[name]))}")
    betas = args.get('betas')
    if betas is not None and (not isinstance(betas, (list, tuple)) or len(betas) != 2
                              or not all(0 <= b < 1 for b in betas)):
        raise ValueError(f"optimizer.args.betas: expected 2 numbers in [0, 1), got {betas}")
    if fused:
        args.setdefault('fused', True)
    return OPTIMIZERS[spec['name']](params, **args)


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
