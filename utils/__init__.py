"""Utilities shared by models, datasets and scripts, one topic per module."""
from .coords import make_coord, to_pixel_samples
from .metrics import Averager, calc_psnr, make_metric
from .checkpoint import load_checkpoint, load_state_dict_strict, save_atomic
from .devices import PRECISIONS, autocast, resolve_device
from .registry import Registry
