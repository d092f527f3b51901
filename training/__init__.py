"""Training: the loader builder, one step and one epoch (training.loop); train_liif.py is the
command that parses a config, builds the run and calls them."""
from .loop import LOG_EVERY, make_loader, train_epoch, train_step
