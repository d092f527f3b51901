"""The training loop of train_liif.py: the loader builder, one optimisation step and one
epoch, where they can be read, changed and timed (scripts/bench_train.py).

An epoch keeps its losses on the device and reads them (a host-device synchronisation on a
GPU) only every LOG_EVERY steps, for the progress bar, and once at its end.
"""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import datasets
from utils.config import require
from utils.coords import flat_batch
from utils.training import Distributed, worker_init_fn

LOG_EVERY = 50  # steps between reads of the loss for the progress bar


def make_loader(spec: Dict[str, Any], source: str, train: bool, distributed: Distributed,
                num_workers: int, device: torch.device, seed: int) -> DataLoader:
    """The DataLoader of a config's train_dataset or val_dataset spec; under DDP the training
    batch is split across the processes. Workers are made anew each epoch (not persistent):
    their seeds then come from the main process's RNG, which a resumed run restores, so that
    resuming stays exact."""
    dataset = datasets.make(require(spec, 'dataset', source))
    dataset = datasets.make(require(spec, 'wrapper', source), args={'dataset': dataset})
    batch_size = require(spec, 'batch_size', source)
    sampler = None
    if train and distributed.enabled:
        if batch_size % distributed.world_size:
            raise ValueError(f"{source}: batch_size {batch_size} is not divisible by the "
                             f"{distributed.world_size} processes")
        batch_size //= distributed.world_size
        sampler = DistributedSampler(dataset, distributed.world_size, distributed.rank,
                                     shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, num_workers=num_workers, drop_last=False,
                      pin_memory=device.type == 'cuda', worker_init_fn=worker_init_fn,
                      persistent_workers=False)


def train_step(model: nn.Module, batch: Dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               norms, impl: str = 'fast', scaler: Optional[torch.amp.GradScaler] = None
               ) -> torch.Tensor:
    """One optimisation step: L1 loss between decoded and true RGB, both normalised. Returns
    the loss, detached, on the device (not read: reading it would wait for the step).

    Batches of either sample form (flat queries, or the grids of the `-fast` wrappers) are
    decoded as flat queries: the same values, and for SRNO the same attention over them.
    """
    batch, _ = flat_batch(batch)
    inp_sub, inp_div, gt_sub, gt_div = norms
    inp = (batch['inp'] - inp_sub) / inp_div
    gt = (batch['gt'] - gt_sub) / gt_div
    with torch.autocast(inp.device.type, dtype=torch.float16, enabled=scaler is not None):
        pred = model(inp, batch['coord'], batch['cell'], impl=impl)
        loss = nn.functional.l1_loss(pred.float(), gt)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, norms,
                device: torch.device, impl: str = 'fast',
                scaler: Optional[torch.amp.GradScaler] = None, desc: str = 'epoch',
                progress: bool = True) -> Tuple[float, int]:
    """One pass over `loader`: (mean loss over its steps, number of steps)."""
    total, steps = torch.zeros((), device=device), 0
    bar = tqdm(loader, leave=False, desc=desc, disable=not progress)
    for batch in bar:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        total += train_step(model, batch, optimizer, norms, impl, scaler)
        steps += 1
        if progress and steps % LOG_EVERY == 0:
            bar.set_postfix(loss=f'{total.item() / steps:.4f}')
    return total.item() / max(steps, 1), steps

