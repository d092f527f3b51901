"""The model registry: `make({'name', 'args', 'sd'})` returns an nn.Module."""
from typing import Any, Dict, Optional

from torch import nn

from utils.checkpoint import load_state_dict_strict
from utils.registry import Registry

MODELS = Registry('model')
register = MODELS.register


def make(model_spec: Dict[str, Any], args: Optional[Dict[str, Any]] = None,
         load_sd: bool = False) -> nn.Module:
    """Builds a model from an official spec.

    Args:
        model_spec: {'name': registered name, 'args': constructor kwargs, 'sd': state dict}.
        args: extra kwargs merged over a copy of model_spec['args'].
        load_sd: load model_spec['sd'], naming any missing or unexpected keys.
    """
    model = MODELS.make(model_spec, args)
    if load_sd:
        if 'sd' not in model_spec:
            raise ValueError(f"load_sd=True but the spec of model '{model_spec['name']}' "
                             "has no 'sd'")
        load_state_dict_strict(model, model_spec['sd'], what=f"model '{model_spec['name']}'")
    return model
