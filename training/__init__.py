"""Training: one step (training.step: the objective and its speed-ups), its processes, data
loaders and one epoch (training.loop), the optimizer and schedule (training.optim), the run
folder and its checkpoints (training.checkpoints); train_liif.py is the
command that reads a config, builds the run and calls them."""
from .loop import (LOG_EVERY, Diverged, Distributed, EpochStats, check_finite_losses,
                   first_sample_shapes, make_loader, mean_over_ranks, train_epoch,
                   unwrap)
from .optim import OPTIMIZERS, make_optimizer, make_scheduler
from .step import (COMPILE_CHOICES, StepOptions, TrainStep, add_step_arguments, l1_objective,
                   resolve_step_options, step_options_from_args)
