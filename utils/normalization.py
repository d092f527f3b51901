"""Data normalisation: how a model's inputs and targets were scaled in training (a config's
`data_norm`), so that every caller feeds and reads a model the same way.

The official configs all train with inputs and targets mapped to [-1, 1], (x - 0.5) / 0.5,
and the official demo.py hard-codes that; a config without data_norm trains on [0, 1]
(identity). The norm of a checkpoint is found once, here (see norm_of_checkpoint).
"""
import os
from typing import Any, Dict, Optional, Tuple

import torch

from .ciaosr_release import CIAOSR_NORM
from .config import NORM, load_config
from .schema import Section, check_config

IDENTITY_NORM = {'inp': {'sub': [0], 'div': [1]}, 'gt': {'sub': [0], 'div': [1]}}
OFFICIAL_NORM = {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}}
RUN_CONFIG = 'config.yaml'  # what train_liif.py writes beside its checkpoints
# Models whose official configs all normalise with CiaoSR's norm (no data_norm key there).
CIAOSR_NAMES = ('ciaosr', 'LocalImplicitSREDSR', 'LocalImplicitSRRDN', 'LocalImplicitSRSWINIR')


def normalisers(data_norm: Optional[Dict[str, Any]], device: torch.device
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inp_sub, inp_div) shaped (1, C, 1, 1) and (gt_sub, gt_div) shaped (1, 1, C) from a
    config's data_norm (None: identity): inputs are fed as (x - sub) / div, targets compared
    the same way."""
    norm = data_norm or IDENTITY_NORM

    def vec(key, part, shape):
        values = norm[key][part]
        if not isinstance(values, (list, tuple)) or len(values) not in (1, 3):
            raise ValueError(f"data_norm.{key}.{part} must list 1 value (all channels) or 3 "
                             f"(R, G, B), got {values!r}")
        return torch.tensor(values, dtype=torch.float32, device=device).view(shape)
    return (vec('inp', 'sub', (1, -1, 1, 1)), vec('inp', 'div', (1, -1, 1, 1)),
            vec('gt', 'sub', (1, 1, -1)), vec('gt', 'div', (1, 1, -1)))


def norm_of_checkpoint(path: str, ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The data_norm a checkpoint's model was trained with: the checkpoint's own 'data_norm'
    (train_liif.py saves it; the official code ignores the extra key), else the data_norm of
    the run's config.yaml beside it (identity if that config has none), else the official
    (x - 0.5) / 0.5 of every official config (CiaoSR's: x - the DIV2K mean)."""
    if ckpt.get('data_norm') is not None:
        return checked_norm(ckpt['data_norm'], f'checkpoint {path}')
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), RUN_CONFIG)
    if os.path.isfile(config_path):
        config = load_config(config_path)
        model = config.get('model')
        if isinstance(model, dict) and model.get('name') == ckpt['model'].get('name'):
            return checked_norm(config.get('data_norm'), config_path) or IDENTITY_NORM
    if ckpt['model'].get('name') in CIAOSR_NAMES:
        return CIAOSR_NORM
    return OFFICIAL_NORM


def checked_norm(data_norm: Any, source: str) -> Optional[Dict[str, Any]]:
    """`data_norm` itself, or a ConfigError naming `source` unless it fits the schema."""
    check_config({'data_norm': data_norm}, Section({'data_norm': NORM}), source)
    return data_norm
