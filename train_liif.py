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
import copy
import errno
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional

import torch
import yaml
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import DistributedSampler

import datasets
import models
from utils import load_checkpoint, load_state_dict_strict, resolve_device, save_atomic
from utils.config import apply_overrides, load_config, override_keys, reroot
from utils.config_schema import train_schema
from utils.errors import error_line
from utils.devices import precision_note
from utils.files import atomic_path
from utils.run_folder import lock_run_folder
from utils.schema import check_config
from inference import IDENTITY_NORM, RenderOptions, Renderer, eval_psnr, normalisers
from training import (Diverged, TrainStep, add_step_arguments, append_losses_csv,
                      make_loader, start_losses_csv, step_options_from_args, train_epoch)
from utils.training import (Distributed, make_optimizer, make_scheduler, mean_over_ranks,
                            rng_state, seed_everything, set_rng_state, unwrap)

logger = logging.getLogger('train')
# Exit status of a run stopped because its loss or weights stopped being finite (bad input
# and other errors: 2).
DIVERGED_STATUS = 3


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--name', default=None, help='run name (default: the config file name)')
    parser.add_argument('--save-dir', default='save', help='parent of run folders (default: save)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from <run folder>/epoch-last.pth')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--device', default='auto',
                        help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--data-root', default=os.environ.get('LIIF_DATA_ROOT'),
                        help='folder that replaces ./load in config paths '
                             '(default: $LIIF_DATA_ROOT)')
    parser.add_argument('--num-workers', type=int, default=None,
                        help='data loading processes per rank (default: 4 on CUDA, 0 on CPU)')
    add_step_arguments(parser)
    parser.add_argument('--impl', choices=['fast', 'reference'], default='fast',
                        help='query path for training and validation (default: %(default)s)')
    parser.add_argument('--set', dest='overrides', nargs='*', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. train_dataset.batch_size=8')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def setup_logging(run_dir: Optional[str]) -> None:
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if run_dir is not None:
        handlers.append(logging.FileHandler(os.path.join(run_dir, 'log.txt')))
    logging.basicConfig(level=logging.INFO, format='%(message)s', handlers=handlers, force=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    distributed = Distributed()
    try:
        return train(args, distributed)
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return DIVERGED_STATUS
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            # The disk is full: the log writers' exit handlers and threads would each print
            # a traceback failing to flush; every checkpoint is written whole or not at all.
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the run continues from its last epoch with --resume",
              file=sys.stderr)
        return 130
    finally:
        distributed.close()


def check_run_dir(save_dir: str, run_dir: str, last_path: str, resume: bool) -> None:
    """The run folder's state fits --resume (checked before anything is written)."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise ValueError(f"--save-dir {save_dir} is a file, not a folder")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"the run folder {run_dir} is a file, not a folder")
    if resume and not os.path.isfile(last_path):
        raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
    if not resume and os.path.exists(last_path):  # checked on every rank, so all stop
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or "
                         "choose another --name")


def load_resume_checkpoint(path: str) -> Dict[str, Any]:
    """A checkpoint written by this script, with what --resume needs, or ValueError."""
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


def train(args: argparse.Namespace, distributed: Distributed) -> int:
    # --- setup: config, device, run folder checks, seed (nothing is written yet) ---
    config = apply_overrides(load_config(args.config), args.overrides)
    check_config(config, train_schema(models.MODELS, datasets.DATASETS), args.config,
                 override_keys(args.overrides))
    config = reroot(config, args.data_root)
    device = resolve_device(args.device)
    if distributed.enabled and device.type == 'cuda':
        device = torch.device('cuda', distributed.local_rank)
        torch.cuda.set_device(device)
    options, fused = step_options_from_args(args, device, distributed.enabled)
    note = precision_note(device, options.precision)
    if note and distributed.is_main:
        print(note, file=sys.stderr)
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    name = args.name or os.path.splitext(os.path.basename(args.config))[0]
    run_dir = os.path.join(args.save_dir, name)
    last_path = os.path.join(run_dir, 'epoch-last.pth')
    check_run_dir(args.save_dir, run_dir, last_path, args.resume)
    distributed.init(device)
    seed_everything(args.seed + distributed.rank)

    # --- data ---
    num_workers = args.num_workers if args.num_workers is not None else \
        (4 if device.type == 'cuda' else 0)
    train_loader = make_loader(config['train_dataset'], f'{args.config}: train_dataset', True,
                               distributed, num_workers, device, args.seed)
    val_loader = None
    if config.get('val_dataset') is not None and distributed.is_main:
        val_loader = make_loader(config['val_dataset'], f'{args.config}: val_dataset', False,
                                 distributed, num_workers, device, args.seed)
    norms = normalisers(config.get('data_norm'), device)

    # --- model, optimizer, schedule; a resumed run's state must fit before anything is
    # written to its folder ---
    model = models.make(config['model']).to(device)
    optimizer = make_optimizer(model.parameters(), config['optimizer'], fused=fused)
    scheduler = make_scheduler(config, optimizer)
    epoch_start, best_psnr = 1, -1e18
    if args.resume:
        ckpt = load_resume_checkpoint(last_path)
        check_resumed_settings(ckpt, config, scheduler, last_path)
        load_state_dict_strict(model, ckpt['model']['sd'], f"config's model ({last_path})")
        try:
            optimizer.load_state_dict(ckpt['optimizer']['sd'])
            if scheduler is not None and ckpt.get('lr_scheduler') is not None:
                scheduler.load_state_dict(ckpt['lr_scheduler'])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{last_path}: its optimizer or scheduler state does not fit the "
                             f"config's: {e}") from None
        epoch_start, best_psnr = ckpt['epoch'] + 1, ckpt.get('best_psnr', best_psnr)
        rng = ckpt.get('rng', {}).get(distributed.rank)
        if rng is not None:
            set_rng_state(rng)
    lock = None
    if distributed.is_main:
        os.makedirs(run_dir, exist_ok=True)
        lock = lock_run_folder(run_dir)  # held until the run ends
        with atomic_path(os.path.join(run_dir, 'config.yaml')) as tmp, open(tmp, 'w') as f:
            yaml.safe_dump(config, f, sort_keys=False)
    setup_logging(run_dir if distributed.is_main else None)
    writer = SummaryWriter(os.path.join(run_dir, 'tensorboard')) if distributed.is_main else None
    if args.resume:
        logger.info(f'resumed from {last_path} at epoch {epoch_start - 1}')
    if options.channels_last:  # before DDP, which registers the parameters as they are
        model.to(memory_format=torch.channels_last)
    if distributed.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    n_params = sum(p.numel() for p in unwrap(model).parameters())
    logger.info(f'model: {config["model"]["name"]}, {n_params / 1e6:.2f}M parameters, '
                f'device {device}, {distributed.world_size} process(es)')
    logger.info(f'step: {options}, fused optimizer: {fused}')
    step = TrainStep(model, optimizer, norms, options)
    losses_path = os.path.join(run_dir, 'losses.csv')
    if distributed.is_main:
        start_losses_csv(losses_path, epoch_start)

    # --- one loop over epochs ---
    epoch_max, epoch_val, epoch_save = config['epoch_max'], config.get('epoch_val'), \
        config.get('epoch_save')
    if epoch_start > epoch_max:
        logger.info(f'{last_path} is at epoch {epoch_start - 1}, epoch_max is {epoch_max}: '
                    'nothing left to train (raise epoch_max with --set to go on)')
    for epoch in range(epoch_start, epoch_max + 1):
        start = time.time()
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        lr = optimizer.param_groups[0]['lr']
        try:
            stats = train_epoch(step, train_loader, device, f'epoch {epoch}',
                                progress=not args.quiet and distributed.is_main)
            check_finite_weights(unwrap(model), f'epoch {epoch}')
        except Diverged as e:
            kept = f"{last_path} keeps epoch {epoch - 1}, the last finite one" \
                if epoch > 1 else "none was written"
            raise Diverged(f"{e}; stopped before writing a checkpoint ({kept})") from None
        if scheduler is not None:
            scheduler.step()
        train_loss = mean_over_ranks(stats.mean_loss, len(stats.losses), device, distributed)
        log = [f'epoch {epoch}/{epoch_max}', f'lr={lr:.2e}', f'train: loss={train_loss:.4f}',
               f'{stats.iterations_per_second:.2f} it/s',
               f'data wait {100 * stats.data_seconds / max(stats.seconds, 1e-9):.0f}%']
        if stats.compile_seconds:
            log.append(f'compile {stats.compile_seconds:.1f}s')

        if distributed.is_main:
            writer.add_scalar('lr', lr, epoch)
            writer.add_scalar('loss/train', train_loss, epoch)
            val_psnr = None
            if val_loader is not None and epoch_val and epoch % epoch_val == 0:
                renderer = Renderer(unwrap(model), config.get('data_norm'),
                                    RenderOptions(impl=args.impl))
                val_psnr = eval_psnr(val_loader, renderer, config.get('eval_type'),
                                     config.get('eval_bsize'), verbose=not args.quiet)
                log.append(f'val: psnr={val_psnr:.4f}')
                writer.add_scalar('psnr/val', val_psnr, epoch)
            if val_psnr is not None and val_psnr > best_psnr:
                best_psnr = val_psnr
            sv = checkpoint(config, unwrap(model), optimizer, scheduler, epoch, best_psnr,
                            distributed)
            append_losses_csv(losses_path, epoch, stats.losses)
            # epoch-<N> before epoch-last: killed in between, the run resumes at epoch N and
            # writes epoch-<N> again, so the series has no hole.
            if epoch_save and epoch % epoch_save == 0:
                save_atomic(sv, os.path.join(run_dir, f'epoch-{epoch}.pth'))
            save_atomic(sv, last_path)
            if val_psnr is not None and val_psnr == best_psnr:
                save_atomic(sv, os.path.join(run_dir, 'epoch-best.pth'))
            log.append(f'{time.time() - start:.1f}s')
            logger.info(', '.join(log))
            writer.flush()
        distributed.barrier()
    if writer is not None:
        writer.close()
    if lock is not None:
        lock.close()
    return 0


SCHEDULES = ('multi_step_lr', 'warmup_step_lr')


def check_resumed_settings(ckpt: Dict[str, Any], config: Dict[str, Any], scheduler,
                           path: str) -> None:
    """ValueError unless the config's optimizer and learning-rate schedule are the ones the
    checkpoint trained with (a resumed run continues with its saved optimizer and schedule
    states, so changed values would be written to config.yaml but never run). epoch_max may
    change: that is how a run is extended."""
    changes = []
    for key in ('name', 'args'):
        if ckpt['optimizer'].get(key) != config['optimizer'].get(key):
            changes.append(f"optimizer.{key}: {ckpt['optimizer'].get(key)} -> "
                           f"{config['optimizer'].get(key)}")
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
                         f"({'; '.join(changes)}); a resumed run keeps its optimizer and "
                         "schedule: restore them, or start a new run (--name)")


def check_finite_weights(model: nn.Module, desc: str) -> None:
    """Diverged naming the first parameter that is not finite."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise Diverged(f"{desc}: parameter {name} is not finite after the last step: "
                           "training diverged (a learning rate too high?)")


def checkpoint(config: Dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, epoch: int, best_psnr: float, distributed: Distributed) -> Dict[str, Any]:
    """The official checkpoint format, plus the scheduler, best PSNR, RNG states and the
    data_norm the model trains with (for demo.py and the viewer; the official code reads
    only 'model', so the file still loads there)."""
    model_spec = copy.deepcopy(config['model'])
    model_spec['sd'] = model.state_dict()
    optimizer_spec = copy.deepcopy(config['optimizer'])
    optimizer_spec['sd'] = optimizer.state_dict()
    return {'model': model_spec, 'optimizer': optimizer_spec, 'epoch': epoch,
            'lr_scheduler': None if scheduler is None else scheduler.state_dict(),
            'best_psnr': best_psnr, 'rng': {distributed.rank: rng_state()},
            'schedule': {k: copy.deepcopy(config.get(k)) for k in SCHEDULES},
            'data_norm': config.get('data_norm') or IDENTITY_NORM}


if __name__ == '__main__':
    sys.exit(main())
