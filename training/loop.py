"""The training loop of train_liif.py: its processes (one, or a torchrun launch), the data
loaders, and one epoch of steps, where they can be read, changed and timed
(scripts/bench_train.py).

An epoch keeps its losses on the device and reads them (a host-device synchronisation on a
GPU) only every LOG_EVERY steps, for the progress bar, and once at its end; it times how long
the step waits for the data loader.
"""
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import datasets
from utils.config import require
from .step import TrainStep

LOG_EVERY = 50  # steps between reads of the loss for the progress bar


def env_int(name: str, default: int, low: int) -> int:
    """An integer environment variable (torchrun's), or ValueError naming it."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer >= {low} "
                         "(torchrun sets it; unset it to train in one process)")
    return value


class Distributed:
    """The process's place in a torchrun launch (world size 1 without torchrun); ValueError
    for a torchrun variable that is not a number."""

    def __init__(self):
        self.world_size = env_int('WORLD_SIZE', 1, 1)
        self.rank = env_int('RANK', 0, 0)
        self.local_rank = env_int('LOCAL_RANK', 0, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"environment variable RANK={self.rank} is not below "
                             f"WORLD_SIZE={self.world_size}")
        self.enabled = self.world_size > 1
        self.is_main = self.rank == 0

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


class EpochStats(NamedTuple):
    """losses: (steps,) float32 loss of every step, on the CPU; seconds: the epoch's wall
    time; data_seconds: of it, the time spent waiting for the loader; compile_seconds: of it,
    the time torch.compile took (0 after the first epoch)."""
    losses: torch.Tensor
    seconds: float
    data_seconds: float
    compile_seconds: float

    @property
    def mean_loss(self) -> float:
        return self.losses.mean().item() if len(self.losses) else 0.0

    @property
    def iterations_per_second(self) -> float:
        """Steps per second, the compile time left out."""
        return len(self.losses) / max(self.seconds - self.compile_seconds, 1e-9)


def make_loader(spec: Dict[str, Any], source: str, train: bool, distributed: Distributed,
                num_workers: Optional[int], device: torch.device, seed: int,
                persistent: bool = False) -> DataLoader:
    """The DataLoader of a config's train_dataset or val_dataset spec; under DDP the training
    batch is split across the processes. num_workers None: 4 on CUDA, 0 on the CPU. Workers
    are made anew each epoch unless `persistent` (training.official): their seeds then come
    from the main process's RNG, which a resumed run restores, so that resuming stays exact."""
    if num_workers is None:
        num_workers = 4 if device.type == 'cuda' else 0
    if num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {num_workers}")
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
    # CLIT's training wrapper draws per batch (datasets.cascaded): its own collate_fn.
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      collate_fn=getattr(dataset, 'collate_fn', None),
                      sampler=sampler, num_workers=num_workers, drop_last=False,
                      pin_memory=device.type == 'cuda',
                      persistent_workers=persistent and num_workers > 0)
    # No worker_init_fn: torch seeds each worker's random, numpy and torch streams itself
    # (from the main process's torch RNG), as in the official trainers, whose workers then
    # draw the same crops, scales and queries as ours.


def first_sample_shapes(loader: DataLoader, tag: str) -> List[str]:
    """The log lines of the official make_data_loader: the dataset's size and the shapes of
    its sample 0. Drawing that sample consumes the random streams (a scale, a crop, flips,
    sampled queries) exactly as the official trainers do before they build the model, so the
    batches that follow are theirs."""
    sample = loader.dataset[0]
    return [f'{tag} dataset: size={len(loader.dataset)}'] + \
        [f'  {k}: shape={tuple(v.shape)}' for k, v in sample.items()]


class Diverged(ValueError):
    """The loss (or the weights) stopped being finite: training cannot go on from here."""


def check_finite_losses(losses: torch.Tensor, first_step: int, desc: str) -> None:
    """Diverged naming the first non-finite loss of `losses` (steps first_step + 1, ...)."""
    bad = (~torch.isfinite(losses)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise Diverged(f"{desc}: the loss is {losses[i].item()} at step {first_step + i + 1}: "
                       "training diverged (a learning rate too high?)")


def train_epoch(step: TrainStep, loader: DataLoader, device: torch.device, desc: str = 'epoch',
                progress: bool = True) -> EpochStats:
    """One pass over `loader`, one `step` per batch; the losses stay on the device until the
    end (and every LOG_EVERY steps, for the progress bar and to stop at once, with Diverged,
    when a loss is not finite)."""
    losses = torch.zeros(len(loader), device=device)
    steps, data_seconds = 0, 0.0
    compile_before = step.compile_seconds
    start = time.perf_counter()
    batches = iter(loader)
    with tqdm(total=len(loader), leave=False, desc=desc, disable=not progress) as bar:
        while True:
            wait = time.perf_counter()
            batch = next(batches, None)
            data_seconds += time.perf_counter() - wait
            if batch is None:
                break
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            losses[steps] = step(batch)
            steps += 1
            bar.update()
            if steps % LOG_EVERY == 0:
                check_finite_losses(losses[steps - LOG_EVERY:steps], steps - LOG_EVERY, desc)
                if progress:
                    bar.set_postfix(loss=f'{losses[:steps].mean().item():.4f}')
        losses = losses[:steps].cpu()  # waits for the last step
        check_finite_losses(losses, 0, desc)
    seconds = time.perf_counter() - start
    compile_seconds = (step.compile_seconds or 0.0) if compile_before is None else 0.0
    return EpochStats(losses, seconds, data_seconds, compile_seconds)
