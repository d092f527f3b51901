"""Utilities shared by models, datasets, inference, training and the scripts, one topic per
module: coordinates (coords), PSNR protocols (metrics), specs and configs (registry, schema,
config), checkpoints (checkpoint), data normalisation (normalization), devices and precisions
(devices), command lines (cli), files and sizes (files, units), MATLAB's bicubic resize
(matlab_resize) and image files (image_io)."""
from .coords import make_coord, to_pixel_samples
from .metrics import calc_psnr, make_metric
from .checkpoint import load_checkpoint, load_state_dict_strict, save_atomic
from .devices import PRECISIONS, autocast, resolve_device
from .registry import Registry
