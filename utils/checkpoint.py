"""Checkpoints in the official LIIF format: {'model': {'name', 'args', 'sd'}, ...}."""
import errno
import os
import shutil
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from .ciaosr_release import read_release
from .files import atomic_path


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Loads a checkpoint on the CPU without running any pickled code.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a readable checkpoint in the official format.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    kind = file_kind(path)
    if kind is not None:
        raise ValueError(f"{path} is {kind}, not a checkpoint: expected a .pth file saved by "
                         "train_liif.py or an official repository ({'model': {'name', 'args', "
                         "'sd'}, ...})")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read checkpoint {path}: {first_line}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict) \
            or not {'name', 'sd'} <= set(ckpt['model']):
        release = read_release(ckpt, path)
        if release is not None:
            return release
        raise ValueError(f"{path} is not a LIIF checkpoint: expected "
                         "{'model': {'name', 'args', 'sd'}, ...} (or a CiaoSR release)")
    return ckpt


# Magic numbers of what a checkpoint (a zip archive, or a legacy pickle) is not.
IMAGE_MAGIC = (b'\x89PNG', b'\xff\xd8\xff', b'GIF8', b'BM', b'II*\x00', b'MM\x00*', b'RIFF')


def file_kind(path: str) -> Optional[str]:
    """What a file that is plainly no checkpoint is ('a text file (YAML?)', 'an image'),
    else None (torch.load decides)."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(IMAGE_MAGIC):
        return 'an image'
    if head.startswith(b'PK') or head[:1] == b'\x80':  # zip (torch.save) or pickle
        return None
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return None
    if ':' in text and not text.lstrip().startswith('{'):
        return 'a text file (a YAML config?)'
    return 'a text file'


def check_state_dict(state_dict: Any, source: str) -> None:
    """ValueError unless `state_dict` maps names to tensors with finite values (a NaN or
    infinite weight would give NaN outputs: refused here, before any result is reported)."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{source}: model.sd: expected a mapping of tensors, got "
                         f"{type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: model.sd.{key}: expected a tensor, got "
                             f"{type(value).__name__}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: model.sd.{key} holds NaN or infinite values; the "
                             "checkpoint is damaged")


def check_fit(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
              what: str = 'model') -> None:
    """ValueError naming every missing, unexpected and mis-shaped key (works on a module on
    the meta device, so nothing is allocated)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state_dict))
                  if tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or mis_shaped:
        parts = []
        for title, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                            ('shape mismatches', mis_shaped)):
            if keys:
                more = f' ... ({len(keys)} in all)' if len(keys) > 5 else ''
                shown = ', '.join(keys[:5]) + more
                parts.append(f"{title}: {shown}")
        raise ValueError(f"the checkpoint does not fit the {what}: " + '; '.join(parts))


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           what: str = 'model') -> None:
    """load_state_dict that names every missing, unexpected and mis-shaped key.

    Raises:
        ValueError: the keys or shapes do not fit `module`.
    """
    check_fit(module, state_dict, what)
    module.load_state_dict(state_dict)


def save_atomic(obj: Any, path: str) -> None:
    """torch.save to a temporary file beside `path`, then rename, so `path` is never
    half-written. A write that fails (a full disk: torch reports it as a RuntimeError) is an
    OSError naming the file and the free space."""
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as e:
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free
        full = getattr(e, 'errno', None) == errno.ENOSPC or free < (1 << 20)
        if full:
            raise OSError(errno.ENOSPC, f"no space left to write {path} ({free / 2 ** 20:.1f} "
                          f"MB free in {folder}); nothing half-written is left") from None
        raise OSError(f"cannot write {path}: {str(e).strip().splitlines()[0]}") from None
