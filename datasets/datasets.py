"""The dataset registry: `make({'name', 'args'})` returns a torch Dataset."""
from typing import Any, Dict, Optional

from torch.utils.data import Dataset

from utils.registry import Registry

DATASETS = Registry('dataset')
register = DATASETS.register


def make(dataset_spec: Dict[str, Any], args: Optional[Dict[str, Any]] = None) -> Dataset:
    """Builds a dataset from {'name', 'args'}; `args` are merged over a copy of spec['args']."""
    return DATASETS.make(dataset_spec, args)
