"""The run's per-step losses file, <run folder>/losses.csv (`epoch,step,loss` rows), which
scripts/compare_losses.py reads: written once per epoch, continued exactly on --resume."""
import os

import torch

from utils.files import atomic_path


def start_losses_csv(path: str, epoch_start: int) -> None:
    """The run's per-step losses file (`epoch,step,loss`), kept to the epochs before
    epoch_start: rows of an epoch a stopped run logged but did not checkpoint go."""
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            rows = [r for r in f.read().splitlines()[1:] if _epoch_of(r) < epoch_start]
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        f.write('\n'.join(['epoch,step,loss'] + rows) + '\n')


def _epoch_of(row: str) -> float:
    """The epoch of a row; an unreadable row (a file cut short) counts as not logged."""
    try:
        return int(row.split(',')[0])
    except ValueError:
        return float('inf')


def append_losses_csv(path: str, epoch: int, losses: torch.Tensor) -> None:
    """Appends one epoch's per-step losses to the run's losses file."""
    with open(path) as f:
        step = sum(1 for _ in f) - 1
    with open(path, 'a') as f:
        f.writelines(f'{epoch},{step + i + 1},{v:.6f}\n' for i, v in enumerate(losses.tolist()))
