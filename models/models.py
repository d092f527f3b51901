"""The model registry: `make({'name', 'args', 'sd'})` returns an nn.Module."""
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from utils.checkpoint import check_fit, check_state_dict
from utils.registry import Registry
from utils.units import format_bytes

MODELS = Registry('model')
register = MODELS.register
# A spec whose constructor registers more tensors than this many per state-dict entry (plus
# a few non-persistent buffers) cannot be the model of that state dict.
TENSORS_PER_ENTRY, TENSOR_SLACK = 2, 64
# A spec without a state dict (a config's) may register at most this many tensors: SwinIR,
# the largest encoder here, has about 600; 1e9 residual blocks are refused in a second.
MAX_TENSORS = 20_000


@contextmanager
def tensor_limit(limit: int, name: str, source: str, max_bytes: Optional[float] = None,
                 per_byte: str = '') -> Iterator[None]:
    """ValueError as soon as more than `limit` parameters and buffers are registered, or (with
    max_bytes) their bytes exceed it, so a spec asking for, say, 1e9 residual blocks or a
    layer 1e9 wide is refused at once, not built (build it on the meta device)."""
    count, size = [0], [0]

    def hook(module, key, tensor):
        count[0] += tensor is not None
        if count[0] > limit:
            raise ValueError(f"{source}: the args of model '{name}' build more than {limit} "
                             "tensors, " + ("far more than any model here has (a few "
                                            "thousand at most)" if max_bytes is not None else
                                            "far more than its state dict holds; the "
                                            "checkpoint's args do not describe its weights"))
        size[0] += 0 if tensor is None else tensor.numel() * tensor.element_size()
        if max_bytes is not None and size[0] > max_bytes:
            raise ValueError(f"{source}: the args of model '{name}' build more than "
                             f"{format_bytes(size[0])} of parameters{per_byte}, above the "
                             f"{format_bytes(max_bytes)} this machine has available for them")
    handles = [module_hooks.register_module_parameter_registration_hook(hook),
               module_hooks.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def make(model_spec: Dict[str, Any], args: Optional[Dict[str, Any]] = None,
         load_sd: bool = False, source: str = 'model spec', max_bytes: Optional[float] = None,
         per_byte: str = '') -> nn.Module:
    """Builds a model from an official spec.

    With load_sd, the state dict is checked before anything is allocated: its values must be
    finite tensors, and a skeleton of the model built on the meta device must have the same
    keys and shapes; only then is the model built and loaded.

    Args:
        model_spec: {'name': registered name, 'args': constructor kwargs, 'sd': state dict}.
        args: extra kwargs merged over a copy of model_spec['args'].
        load_sd: load model_spec['sd'], naming any missing, unexpected or mis-shaped keys.
        source: what the spec came from, for error messages (e.g. the checkpoint's path).
        max_bytes: without load_sd, refuse (ValueError) a spec whose parameters and buffers
            take more bytes than this, checked on a meta-device build first; per_byte says in
            the message what else each parameter byte costs (e.g. training's gradients).
    """
    if not load_sd:
        if max_bytes is not None:
            with torch.device('meta'), tensor_limit(MAX_TENSORS, model_spec.get('name'),
                                                    source, max_bytes, per_byte):
                MODELS.make(model_spec, args)
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
