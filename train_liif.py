"""Train LIIF, LTE, SRNO, LMF (or a baseline) from a YAML config: self-supervised SR at
random scales.

Config keys (the official ones):
  train_dataset, val_dataset: {dataset: spec, wrapper: spec, batch_size}; val_dataset optional
  model: model spec;  optimizer: {name: adam|sgd, args}
  data_norm: {inp: {sub, div}, gt: {sub, div}} (optional; identity when absent)
  epoch_max;  multi_step_lr: {milestones, gamma} (optional; LIIF, LTE)
  warmup_step_lr: {multiplier, total_epoch} (optional; SRNO: linear warm-up to multiplier * lr,
    then a cosine to 0 at epoch_max)
  epoch_val, epoch_save: validate / keep epoch-<N>.pth every N epochs (optional)
  eval_type, eval_bsize: validation protocol (optional; see test.py)
batch_size is the global batch: under torchrun each of the N processes takes batch_size / N.

The run folder (--save-dir/--name, default save/<config name>) gets config.yaml, log.txt,
tensorboard logs, epoch-last.pth every epoch, epoch-<N>.pth every epoch_save epochs and
epoch-best.pth at the best validation PSNR, in the official checkpoint format; --resume
continues from epoch-last.pth with model, optimizer, scheduler, epoch and RNG states.
A loss or a weight that stops being finite stops the run at once (checked every 50 steps
and before every checkpoint), exit status 3, its last checkpoint kept as it was.

The training step's speed-ups (training/step.py): --amp (bf16 autocast), --compile (on a
CUDA device by default, with CUDA graphs), --channels-last, --fused-optimizer; every step's
loss goes to <run folder>/losses.csv (scripts/compare_losses.py compares runs).

Examples:
  python train_liif.py --config configs/train-t91/train_t91_small-liif.yaml \\
      --data-root ../shared/data
  python train_liif.py --config configs/train-div2k/train_edsr-baseline-liif.yaml --amp
  torchrun --nproc_per_node 2 train_liif.py \\
      --config configs/train-div2k/train_edsr-baseline-liif.yaml
"""
import argparse
import logging
import math
import os
import pickle
import random
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

import datasets
import models
from inference import Renderer, eval_psnr
from inference.options import RenderOptions
from training import (OPTIMIZERS, Diverged, Distributed, EpochStats, TrainStep,
                      add_step_arguments, first_sample_shapes, make_loader, make_optimizer,
                      make_scheduler, mean_over_ranks, step_options_from_args, train_epoch,
                      unwrap)
from training.checkpoints import (LAST, append_losses_csv, check_finite_weights, check_loss,
                                  check_run_dir, checkpoint, largest_weight, load_pre_train,
                                  load_resume_checkpoint, lock_run_folder, resume, run_seed,
                                  start_losses_csv)
from training.official import official_trainer
from utils import resolve_device, save_atomic
from utils.cli import DATA_ROOT, DEVICE, NUM_WORKERS, OVERRIDES, ArgumentParser, number, run_main
from utils.config import read_config, train_schema
from utils.devices import available_memory, print_precision_note
from utils.normalization import normalisers

logger = logging.getLogger('train')
# Exit status of a run stopped because its loss or weights stopped being finite (bad input
# and other errors: 2).
DIVERGED_STATUS = 3
# Bytes a parameter byte costs in training: its weight, gradient and Adam's two moments.
BYTES_PER_PARAM_BYTE = 4


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--name', default=None, help='run name (default: the config file name)')
    parser.add_argument('--save-dir', default='save', help='parent of run folders (default: save)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from <run folder>/epoch-last.pth')
    parser.add_argument('--seed', type=number(int, 0, 2 ** 32 - 1), default=None,
                        help='random seed (default: 0; a resumed run continues its own)')
    for names, spec in (DEVICE, DATA_ROOT, NUM_WORKERS, OVERRIDES):
        parser.add_argument(*names, **spec)
    add_step_arguments(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


@dataclass
class Run:
    """What prepare_run builds: the parts of one training run, as the loop uses them."""
    config: Dict[str, Any]
    run_dir: str
    device: torch.device
    distributed: Distributed
    train_loader: DataLoader
    val_loader: Optional[DataLoader]
    model: nn.Module                  # in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: TrainStep
    epoch_start: int
    best_psnr: float
    writer: Optional[SummaryWriter]   # the main process's only
    lock: Any
    impl: str
    progress: bool
    seed: int


def prepare_run(args: argparse.Namespace, distributed: Distributed) -> Run:
    """Config, device, run-folder checks, seeds, loaders, model, optimizer, schedule and a
    resumed run's state, in that order; nothing is written before all of them hold."""
    config = read_config(args.config, args.overrides,
                         train_schema(models.MODELS, datasets.DATASETS, OPTIMIZERS),
                         args.data_root)
    if config.get('epoch_val') and config.get('val_dataset') is None:
        raise ValueError(f"{args.config}: epoch_val: {config['epoch_val']} asks for validation, "
                         "but the config has no val_dataset (give one, or epoch_val: null)")
    device = resolve_device(args.device)
    if distributed.enabled and device.type == 'cuda':
        device = torch.device('cuda', distributed.local_rank)
        torch.cuda.set_device(device)
    options, fused = step_options_from_args(args, device, distributed.enabled)
    print_precision_note(device, options.precision, distributed.is_main)
    run_dir = run_folder(args)
    check_run_dir(args.save_dir, run_dir, args.resume)
    distributed.init(device)
    source, why = resume_source(args.resume, config.get('resume'), run_dir)
    resumed = load_resume_checkpoint(source) if source else None  # read once, used twice
    base_seed = run_seed(resumed, args.seed)
    seed = base_seed + distributed.rank  # seeded once, here
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)

    # In the official trainers' order, each dataset's sample 0 drawn as theirs draw it.
    persistent = official_trainer(config['model']['name']).persistent_workers
    train_loader = make_loader(config['train_dataset'], f'{args.config}: train_dataset', True,
                               distributed, args.num_workers, device, base_seed, persistent)
    log_lines = first_sample_shapes(train_loader, 'train')
    val_loader = None
    if config.get('val_dataset') is not None and distributed.is_main:
        val_loader = make_loader(config['val_dataset'], f'{args.config}: val_dataset', False,
                                 distributed, args.num_workers, device, base_seed, persistent)
        log_lines += first_sample_shapes(val_loader, 'val')
    available = available_memory()
    model = models.make(config['model'], source=f"{args.config}: model",
                        max_bytes=None if available is None else available / BYTES_PER_PARAM_BYTE,
                        per_byte=" (x4 in training: weights, gradients, Adam's two moments)"
                        ).to(device)
    optimizer = make_optimizer(model.parameters(), config['optimizer'], fused=fused)
    scheduler = make_scheduler(config, optimizer)
    epoch_start, best_psnr = resume(resumed, source, config, model, optimizer, scheduler,
                                    distributed.rank) if source else (1, -1e18)
    if config.get('pre_train') and not source:  # a resumed run holds its pre_train already
        fresh = load_pre_train(config['pre_train'], model)
        log_lines.append(f"pre_train: weights from {config['pre_train']}; kept fresh: "
                         + (', '.join(fresh) if fresh else 'none'))

    lock, writer = start_run_folder(run_dir, config, epoch_start, distributed.is_main)
    for line in log_lines + [why] * bool(why):
        logger.info(line)
    if source:
        logger.info(f'resumed from {source} at epoch {epoch_start - 1}')
    if options.channels_last:  # before DDP, which registers the parameters as they are
        model.to(memory_format=torch.channels_last)
    if distributed.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    n_params = sum(p.numel() for p in unwrap(model).parameters())
    logger.info(f'model: {config["model"]["name"]}, {n_params / 1e6:.2f}M parameters, '
                f'device {device}, {distributed.world_size} process(es)')
    logger.info(f'step: {options}, fused optimizer: {fused}')
    step = TrainStep(model, optimizer, normalisers(config.get('data_norm'), device), options)
    return Run(config, run_dir, device, distributed, train_loader, val_loader, model,
               optimizer, scheduler, step, epoch_start, best_psnr, writer, lock, args.impl,
               not args.quiet and distributed.is_main, base_seed)


def resume_source(flag: bool, config_resume: Optional[str], run_dir: str):
    """(the checkpoint to resume from or None, a log line saying why or None): --resume
    takes the run folder's epoch-last.pth; else the config's `resume` key is read as the
    official LTE, SRNO and LMF trainers read it: resume from the file if it exists, else start
    fresh (LIIF's trainer would stop on a missing file)."""
    if flag:
        ignored = f'--resume: the config\'s resume ({config_resume}) is not read' \
            if config_resume else None
        return os.path.join(run_dir, LAST), ignored
    if not config_resume:
        return None, None
    if os.path.isfile(config_resume):
        return config_resume, f'the config\'s resume: {config_resume} exists: resuming from it'
    return None, f'the config\'s resume: {config_resume} does not exist: starting fresh'


def start_run_folder(run_dir: str, config: Dict[str, Any], epoch_start: int, is_main: bool):
    """The main process takes the folder (its lock; config.yaml written) and starts
    losses.csv; every process logs (to log.txt too on the main one). Returns (lock,
    tensorboard writer)."""
    lock = writer = None
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_main:
        lock = lock_run_folder(run_dir, config)  # held until the run ends
        start_losses_csv(os.path.join(run_dir, 'losses.csv'), epoch_start)
        handlers.append(logging.FileHandler(os.path.join(run_dir, 'log.txt')))
        writer = SummaryWriter(os.path.join(run_dir, 'tensorboard'))
    logging.basicConfig(level=logging.INFO, format='%(message)s', handlers=handlers, force=True)
    return lock, writer


def train(args: argparse.Namespace, distributed: Distributed) -> int:
    run = prepare_run(args, distributed)
    epoch_max = run.config['epoch_max']
    if run.epoch_start > epoch_max:
        logger.info(f'{os.path.join(run.run_dir, LAST)} is at epoch {run.epoch_start - 1}, '
                    f'epoch_max is {epoch_max}: nothing left to train (raise epoch_max with '
                    '--set to go on)')
    first_weight, lowest_loss = largest_weight(unwrap(run.model)), None
    for epoch in range(run.epoch_start, epoch_max + 1):
        start = time.time()
        if isinstance(run.train_loader.sampler, DistributedSampler):
            run.train_loader.sampler.set_epoch(epoch)
        run.model.train()
        lr = run.optimizer.param_groups[0]['lr']
        try:
            stats = train_epoch(run.step, run.train_loader, run.device, f'epoch {epoch}',
                                progress=run.progress)
            check_finite_weights(unwrap(run.model), f'epoch {epoch}', first_weight)
            if not distributed.enabled:  # (each process has its own mean: no collective here)
                check_loss(stats.mean_loss, lowest_loss, f'epoch {epoch}')
                lowest_loss = min(lowest_loss or math.inf, stats.mean_loss)
        except Diverged as e:
            kept = f"{os.path.join(run.run_dir, LAST)} keeps epoch {epoch - 1}, the last " \
                "good one" if epoch > 1 else "none was written"
            raise Diverged(f"{e}; stopped before writing a checkpoint ({kept})") from None
        if run.scheduler is not None:
            run.scheduler.step()
        end_epoch(run, epoch, lr, stats, start)
        distributed.barrier()
    if run.writer is not None:
        run.writer.close()
    if run.lock is not None:
        run.lock.close()
    return 0


def validates(config: Dict[str, Any], epoch: int) -> bool:
    """Whether the epoch ends with validation: every epoch_val epochs, and after epoch 1
    where the model's official trainer does (SRNO's): validation draws from the random
    streams, so the batches after it depend on when it runs."""
    every = config.get('epoch_val')
    first = epoch == 1 and official_trainer(config['model']['name']).validates_after_epoch_1
    return bool(every and epoch % every == 0) or first


def end_epoch(run: Run, epoch: int, lr: float, stats: EpochStats, start: float) -> None:
    """The end of an epoch: the loss averaged over the processes; on the main process,
    validation (every epoch_val epochs), the log line, tensorboard, losses.csv and the
    checkpoints."""
    train_loss = mean_over_ranks(stats.mean_loss, len(stats.losses), run.device,
                                 run.distributed)
    if not run.distributed.is_main:
        return
    config, writer = run.config, run.writer
    log = [f'epoch {epoch}/{config["epoch_max"]}', f'lr={lr:.2e}',
           f'train: loss={train_loss:.4f}', f'{stats.iterations_per_second:.2f} it/s',
           f'data wait {100 * stats.data_seconds / max(stats.seconds, 1e-9):.0f}%']
    if stats.compile_seconds:
        log.append(f'compile {stats.compile_seconds:.1f}s')
    writer.add_scalar('lr', lr, epoch)
    writer.add_scalar('loss/train', train_loss, epoch)
    val_psnr = None
    if run.val_loader is not None and validates(config, epoch):
        renderer = Renderer(unwrap(run.model), config.get('data_norm'),
                            RenderOptions(impl=run.impl))
        val_psnr = eval_psnr(run.val_loader, renderer, config.get('eval_type'),
                             config.get('eval_bsize'), verbose=run.progress)
        log.append(f'val: psnr={val_psnr:.4f}')
        writer.add_scalar('psnr/val', val_psnr, epoch)
    best = val_psnr is not None and val_psnr > run.best_psnr
    run.best_psnr = val_psnr if best else run.best_psnr
    sv = checkpoint(config, unwrap(run.model), run.optimizer, run.scheduler, epoch,
                    run.best_psnr, run.distributed.rank, run.seed)
    append_losses_csv(os.path.join(run.run_dir, 'losses.csv'), epoch, stats.losses)
    # epoch-<N> before epoch-last: killed in between, the run resumes at epoch N and writes
    # epoch-<N> again, so the series has no hole.
    if config.get('epoch_save') and epoch % config['epoch_save'] == 0:
        save_atomic(sv, os.path.join(run.run_dir, f'epoch-{epoch}.pth'))
    save_atomic(sv, os.path.join(run.run_dir, LAST))
    if best:
        save_atomic(sv, os.path.join(run.run_dir, 'epoch-best.pth'))
    log.append(f'{time.time() - start:.1f}s')
    logger.info(', '.join(log))
    writer.flush()


def run_folder(args: argparse.Namespace) -> str:
    """--save-dir/--name, the name defaulting to the config file's."""
    return os.path.join(args.save_dir,
                        args.name or os.path.splitext(os.path.basename(args.config))[0])


def interrupted(args: argparse.Namespace) -> str:
    """What a stopped run says: where it can continue from (--resume)."""
    last = os.path.join(run_folder(args), LAST)
    try:
        epoch = torch.load(last, map_location='cpu', weights_only=True, mmap=True)['epoch']
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError):  # none yet
        return 'interrupted before the first epoch ended; no checkpoint was written'
    return f'interrupted; {last} holds epoch {epoch}: continue with --resume'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    distributed: List[Distributed] = []  # made in the body: a bad torchrun variable is an error

    def body() -> int:
        distributed.append(Distributed())
        return train(args, distributed[0])
    try:
        return run_main(body, partial(interrupted, args), {Diverged: DIVERGED_STATUS})
    finally:
        if distributed:
            distributed[0].close()


if __name__ == '__main__':
    sys.exit(main())
