"""The model registry: `make({'name', 'args', 'sd'})` returns an nn.Module."""
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from utils.checkpoint import check_fit, check_state_dict
from utils.registry import Registry

MODELS = Registry('model')
register = MODELS.register
# A spec whose constructor registers more tensors than this many per state-dict entry (plus
# a few non-persistent buffers) cannot be the model of that state dict.
TENSORS_PER_ENTRY, TENSOR_SLACK = 2, 64


@contextmanager
def tensor_limit(limit: int, name: str, source: str) -> Iterator[None]:
    """ValueError as soon as more than `limit` parameters and buffers are registered, so a
    spec asking for, say, 1e9 residual blocks is refused at once, not built."""
    count = [0]

    def hook(module, key, tensor):
        count[0] += tensor is not None
        if count[0] > limit:
            raise ValueError(f"{source}: the args of model '{name}' build more than {limit} "
                             "tensors, far more than its state dict holds; the checkpoint's "
                             "args do not describe its weights")
    handles = [module_hooks.register_module_parameter_registration_hook(hook),
               module_hooks.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def make(model_spec: Dict[str, Any], args: Optional[Dict[str, Any]] = None,
         load_sd: bool = False, source: str = 'model spec') -> nn.Module:
    """Builds a model from an official spec.

    With load_sd, the state dict is checked before anything is allocated: its values must be
    finite tensors, and a skeleton of the model built on the meta device must have the same
    keys and shapes; only then is the model built and loaded.

    Args:
        model_spec: {'name': registered name, 'args': constructor kwargs, 'sd': state dict}.
        args: extra kwargs merged over a copy of model_spec['args'].
        load_sd: load model_spec['sd'], naming any missing, unexpected or mis-shaped keys.
        source: what the spec came from, for error messages (e.g. the checkpoint's path).
    """
    if not load_sd:
        return MODELS.make(model_spec, args)
    if 'sd' not in model_spec:
        raise ValueError(f"load_sd=True but the spec of model '{model_spec['name']}' "
                         "has no 'sd'")
    state_dict = model_spec['sd']
    check_state_dict(state_dict, source)
    what = f"model '{model_spec['name']}'"
    with torch.device('meta'), \
            tensor_limit(TENSORS_PER_ENTRY * len(state_dict) + TENSOR_SLACK, model_spec['name'],
                         source):
        check_fit(MODELS.make(model_spec, args), state_dict, what)
    model = MODELS.make(model_spec, args)
    model.load_state_dict(state_dict)
    return model
