"""A training run's folder (save/<name>) and its checkpoints. The folder is checked before
anything is written, held by one process at a time, and holds config.yaml, losses.csv (the
loss of every step, `epoch,step,loss` rows that scripts/compare_losses.py reads; written once
per epoch, continued exactly on --resume) and the checkpoints: written in the official format
every epoch, checked before they are written (finite weights), and read back by --resume,
which refuses a config that changes what it cannot honour."""
import copy
import glob
import math
import os
import random
import warnings
from typing import IO, Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml
from torch import nn

from utils import load_checkpoint, load_state_dict_strict
from utils.files import atomic_path
from utils.normalization import IDENTITY_NORM
from .loop import Diverged
from .optim import SCHEDULES

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

LOCK_NAME = '.lock'
TMP_PATTERN = '.tmp-*'
LAST = 'epoch-last.pth'


def check_run_dir(save_dir: str, run_dir: str, resume: bool) -> None:
    """The run folder's state fits --resume (checked before anything is written)."""
    last_path = os.path.join(run_dir, LAST)
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise ValueError(f"--save-dir {save_dir} is a file, not a folder")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"the run folder {run_dir} is a file, not a folder")
    if resume and not os.path.isfile(last_path):
        raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
    if not resume and os.path.exists(last_path):  # checked on every rank, so all stop
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or "
                         "choose another --name")


def lock_run_folder(run_dir: str, config: Dict[str, Any]) -> Optional[IO]:
    """Makes the folder, takes its lock (released when the process ends), removes the
    temporary files of saves killed before they completed, and writes the resolved config as
    config.yaml. Returns the open lock file (keep it).

    Raises:
        ValueError: another process holds the lock (two runs in one folder would overwrite
            each other's checkpoints).
    """
    os.makedirs(run_dir, exist_ok=True)
    handle = None
    if fcntl is not None:  # no lock on Windows
        handle = open(os.path.join(run_dir, LOCK_NAME), 'a')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ValueError(f"{run_dir} is in use by another training process (it holds "
                             f"{os.path.join(run_dir, LOCK_NAME)}); wait for it to end, or "
                             "give this run another --name") from None
    for stale in glob.glob(os.path.join(glob.escape(run_dir), TMP_PATTERN)):
        os.remove(stale)
    with atomic_path(os.path.join(run_dir, 'config.yaml')) as tmp, open(tmp, 'w') as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return handle


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
        f.writelines(f'{epoch},{step + i + 1},{v:.9g}\n' for i, v in enumerate(losses.tolist()))




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
    version, internal, gauss = state['python']  # lists for tuples, back from a checkpoint
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def checkpoint(config: Dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, epoch: int, best_psnr: float, rank: int,
               seed: Optional[int] = None) -> Dict[str, Any]:
    """The official checkpoint format, plus the scheduler, best PSNR, RNG states, the run's
    seed and the data_norm the model trains with (for demo.py and the viewer; the official
    code reads only 'model', so the file still loads there)."""
    model_spec = copy.deepcopy(config['model'])
    model_spec['sd'] = model.state_dict()
    optimizer_spec = copy.deepcopy(config['optimizer'])
    optimizer_spec['sd'] = optimizer.state_dict()
    return {'model': model_spec, 'optimizer': optimizer_spec, 'epoch': epoch,
            'lr_scheduler': None if scheduler is None else scheduler.state_dict(),
            'best_psnr': best_psnr, 'rng': {rank: rng_state()}, 'seed': seed,
            'schedule': {k: copy.deepcopy(config.get(k)) for k in SCHEDULES},
            'data_norm': config.get('data_norm') or IDENTITY_NORM}


# A run has diverged when its largest weight grows this many times over the run's start,
# or an epoch's mean loss this many times over the lowest so far (training moves both by a
# few times at most; a learning rate of 1e26 moves them by orders of magnitude).
DIVERGENCE_FACTOR = 1e4


def largest_weight(model: nn.Module) -> float:
    """The largest absolute value of any parameter."""
    return max((p.detach().abs().max().item() for p in model.parameters() if p.numel()),
               default=0.0)


def check_finite_weights(model: nn.Module, desc: str, start: Optional[float] = None) -> None:
    """Diverged naming the first parameter that is not finite, or (given the largest weight
    at the run's start) when the largest weight grew DIVERGENCE_FACTOR times beyond it."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise Diverged(f"{desc}: parameter {name} is not finite after the last step: "
                           "training diverged (a learning rate too high?)")
    largest = largest_weight(model)
    if start and largest > DIVERGENCE_FACTOR * start:
        raise Diverged(f"{desc}: the largest weight is {largest:.3g}, {largest / start:.3g} "
                       f"times the {start:.3g} the run started with: training diverged (a "
                       "learning rate too high?)")


def check_loss(mean_loss: float, lowest: Optional[float], desc: str) -> None:
    """Diverged when an epoch's mean loss is not finite or DIVERGENCE_FACTOR times the lowest
    epoch mean so far."""
    if not math.isfinite(mean_loss) or (lowest and mean_loss > DIVERGENCE_FACTOR * lowest):
        raise Diverged(f"{desc}: the mean loss is {mean_loss:.3g}"
                       + (f", {mean_loss / lowest:.3g} times the lowest epoch's ({lowest:.3g})"
                          if lowest and math.isfinite(mean_loss) else '')
                       + ": training diverged (a learning rate too high?)")


def load_resume_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by train_liif.py, with what --resume needs, or ValueError."""
    ckpt = load_checkpoint(path)
    optimizer = ckpt.get('optimizer')
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get('sd'), dict):
        raise ValueError(f"{path} has no optimizer state ('optimizer': {{'sd': ...}}), so "
                         "training cannot continue from it; --resume needs an epoch-last.pth "
                         "written by train_liif.py")
    epoch = ckpt.get('epoch')
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"{path}: 'epoch' must be a non-negative integer, got {epoch!r}")
    return ckpt


def check_resumed_settings(ckpt: Dict[str, Any], config: Dict[str, Any], scheduler,
                           path: str) -> None:
    """ValueError unless the config's model, data_norm, optimizer and learning-rate schedule
    are the ones the checkpoint trained with (a resumed run continues with its saved weights,
    optimizer and schedule states, so changed values would be written to config.yaml but
    never run, or run on weights trained for something else), naming every difference.
    epoch_max may change: that is how a run is extended."""
    model = {k: v for k, v in ckpt['model'].items() if k != 'sd'}
    changes = differences(model, config['model'], 'model')
    changes += differences({k: v for k, v in ckpt['optimizer'].items() if k != 'sd'},
                           config['optimizer'], 'optimizer')
    if 'data_norm' in ckpt:  # (official checkpoints do not hold it)
        changes += differences(ckpt['data_norm'], config.get('data_norm') or IDENTITY_NORM,
                               'data_norm')
    saved = ckpt.get('schedule')
    if saved is not None:
        changes += [f"{k}: {saved.get(k)} -> {config.get(k)}" for k in SCHEDULES
                    if saved.get(k) != config.get(k)]
    elif scheduler is not None and ckpt.get('lr_scheduler'):  # checkpoints before 'schedule'
        fresh = scheduler.state_dict()
        changes += [f"the schedule's {k}: {ckpt['lr_scheduler'][k]} -> {fresh[k]}"
                    for k in ('milestones', 'gamma')
                    if k in fresh and k in ckpt['lr_scheduler']
                    and ckpt['lr_scheduler'][k] != fresh[k]]
    if changes:
        raise ValueError(f"--resume: the config changes what {path} trained with "
                         f"({'; '.join(changes)}); a resumed run keeps its model, data_norm, "
                         "optimizer and schedule: restore them, or start a new run (--name)")


def differences(saved: Any, given: Any, path: str) -> List[str]:
    """'path.key: saved -> given' for every value that differs between two configs."""
    if isinstance(saved, dict) and isinstance(given, dict):
        return [change for key in dict.fromkeys([*saved, *given])
                for change in differences(saved.get(key), given.get(key), f'{path}.{key}')]
    return [] if saved == given else [f"{path}: {saved} -> {given}"]


def load_pre_train(path: str, model: nn.Module) -> List[str]:
    """CLIT's `pre_train`: every weight of the checkpoint that the model also has (same key)
    is copied into it, as the official trainer does; the others keep their fresh values;
    nothing is frozen, and the optimizer and schedule start afresh. Returns the keys kept
    fresh. ValueError if a shared key's shape differs (naming it) or nothing is shared."""
    given = load_checkpoint(path)['model']['sd']
    sd = model.state_dict()
    shared = {k: v for k, v in given.items() if k in sd}
    wrong = [f'{k} {tuple(v.shape)} vs {tuple(sd[k].shape)}' for k, v in shared.items()
             if v.shape != sd[k].shape]
    if wrong or not shared:
        raise ValueError(f"pre_train {path} does not fit the config's model: "
                         + ('; '.join(wrong[:5]) if wrong else 'no key in common'))
    sd.update(shared)
    model.load_state_dict(sd)
    return [k for k in sd if k not in shared]


def run_seed(ckpt: Optional[Dict[str, Any]], given: Optional[int]) -> int:
    """The run's seed: `given` (default 0) for a new run (ckpt None) or one resumed from a
    checkpoint without random state (an official one); for one resumed from ours, the seed
    it was trained with (its saved random state continues, so a different `given` would be
    ignored: ValueError)."""
    if ckpt is None or not ckpt.get('rng'):  # no saved random state: the seed is used
        return 0 if given is None else given
    saved = ckpt.get('seed')
    if given is not None and given != saved:
        raise ValueError(f"--seed {given} with --resume: the run continues the checkpoint's "
                         "random state (its seed: "
                         f"{'not recorded' if saved is None else saved}), so a new seed would "
                         "be ignored; drop --seed, or start a new run (--name)")
    return saved if saved is not None else given if given is not None else 0


def resume(ckpt: Dict[str, Any], path: str, config: Dict[str, Any], model: nn.Module,
           optimizer: torch.optim.Optimizer, scheduler, rank: int) -> Tuple[int, float]:
    """Loads `ckpt` (load_resume_checkpoint of `path`) into the model, optimizer, scheduler
    and this rank's RNGs, after checking that the config still describes its run. Returns
    (the epoch to start at, the best validation PSNR so far)."""
    check_resumed_settings(ckpt, config, scheduler, path)
    load_state_dict_strict(model, ckpt['model']['sd'], f"config's model ({path})")
    try:
        optimizer.load_state_dict(ckpt['optimizer']['sd'])
        if scheduler is not None and ckpt.get('lr_scheduler') is not None:
            scheduler.load_state_dict(ckpt['lr_scheduler'])
        elif scheduler is not None:  # an official checkpoint: stepped as its trainers do
            with warnings.catch_warnings():  # (stepped before any optimizer.step: intended)
                warnings.filterwarnings('ignore', r'Detected call of `lr_scheduler\.step\(\)`')
                for _ in range(ckpt['epoch']):
                    scheduler.step()
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: its optimizer or scheduler state does not fit the "
                         f"config's: {e}") from None
    rng = ckpt.get('rng', {}).get(rank)
    if rng is not None:
        set_rng_state(rng)
    return ckpt['epoch'] + 1, ckpt.get('best_psnr', -1e18)
