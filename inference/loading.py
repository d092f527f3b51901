"""Loading an arbitrary-scale model from a checkpoint, and the data_norm it was trained with
(utils.normalization.norm_of_checkpoint), for the scripts."""
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

import models
from models import ImplicitDecoder
from utils import load_checkpoint
from utils.config import load_config, model_spec
from utils.normalization import OFFICIAL_NORM, norm_of_checkpoint
from utils.schema import Section, check_config

BICUBIC_SPEC = {'name': 'bicubic', 'args': {}, 'sd': {}}


def decoder_names() -> List[str]:
    """Registered models that decode queries (implement models.ImplicitDecoder), sorted."""
    return [name for name in models.MODELS.names()
            if isinstance(models.MODELS.get(name), type)
            and issubclass(models.MODELS.get(name), ImplicitDecoder)]


def check_decoder_spec(spec: Dict[str, Any], source: str) -> None:
    """ValueError unless the spec names a model that decodes queries."""
    if spec['name'] not in decoder_names():
        raise ValueError(f"{source} holds a '{spec['name']}' model, which does not decode "
                         f"queries; expected one of: {', '.join(decoder_names())}")


def load_decoder_and_norm(path: str, device: torch.device
                          ) -> Tuple[ImplicitDecoder, Optional[Dict[str, Any]]]:
    """The model of a checkpoint in the official format (or bicubic interpolation for the name
    'bicubic' when no such file exists), in eval mode on `device`, and the data_norm it was
    trained with (see utils.normalization.norm_of_checkpoint).

    Raises:
        FileNotFoundError, ValueError: missing or unreadable checkpoint, a model that is not an
            arbitrary-scale decoder, weights that do not fit it, a malformed data_norm.
    """
    if path == 'bicubic' and not os.path.exists(path):
        spec, norm = BICUBIC_SPEC, OFFICIAL_NORM
    else:
        ckpt = load_checkpoint(path)
        spec = ckpt['model']
        check_config({'model': spec}, Section({'model': model_spec(models.MODELS, True)}),
                     f'checkpoint {path}')
        check_decoder_spec(spec, path)
        norm = norm_of_checkpoint(path, ckpt)
    model = models.make(spec, load_sd=True, source=f'checkpoint {path}').to(device).eval()
    return model, norm


def load_decoder(path: str, device: torch.device) -> ImplicitDecoder:
    """The model of load_decoder_and_norm alone."""
    return load_decoder_and_norm(path, device)[0]


def is_checkpoint(source: str) -> bool:
    """Whether a --model source names a checkpoint ('.pth', or 'bicubic'), not a model spec."""
    return source.endswith('.pth') or source == 'bicubic'


def load_decoder_or_spec(source: str, device: torch.device
                         ) -> Tuple[ImplicitDecoder, Dict[str, Dict[str, List[float]]]]:
    """A checkpoint's model and data_norm (load_decoder_and_norm), or a spec's model with random
    weights (seed 0) and the official data_norm: a YAML file holding {name, args} or a training
    config (its `model`). For timing and counting, which do not depend on the weights."""
    if is_checkpoint(source):
        return load_decoder_and_norm(source, device)
    spec = load_config(source)
    spec = spec.get('model', spec)
    check_decoder_spec(spec, source)
    torch.manual_seed(0)
    return models.make(spec).to(device).eval(), OFFICIAL_NORM
