"""Training: one step (training.step: the objective and its speed-ups), the loader builder and
one epoch (training.loop); train_liif.py is the command that parses a config, builds the run
and calls them."""
from .loop import LOG_EVERY, EpochStats, make_loader, train_epoch
from .step import COMPILE_CHOICES, StepOptions, TrainStep, l1_objective, resolve_step_options
