"""Training: one step (training.step: the objective and its speed-ups), the loader builder and
one epoch (training.loop), the per-step loss log (training.loss_log); train_liif.py is the
command that parses a config, builds the run and calls them."""
from .loop import LOG_EVERY, Diverged, EpochStats, check_finite_losses, make_loader, train_epoch
from .loss_log import append_losses_csv, start_losses_csv
from .step import (COMPILE_CHOICES, StepOptions, TrainStep, add_step_arguments, l1_objective,
                   precision_of, resolve_step_options, step_options_from_args)
