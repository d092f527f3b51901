"""YAML configs: loading, re-rooting of ./load paths, and dotted overrides."""
import os
import re
from typing import Any, Dict, Iterable, List, Optional

import yaml

from .errors import one_line

DEFAULT_DATA_ROOT = './load'


def load_config(path: str, what: str = 'config') -> Dict[str, Any]:
    """Reads a YAML mapping (a config, or `what` the file is) with yaml.safe_load.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid YAML (the parser's message on one line), or not a mapping.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path) as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{what} {path} is not valid YAML: {one_line(str(e))}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{what} {path} must be a YAML mapping, got {type(config).__name__}")
    return config


def reroot(config: Any, data_root: Optional[str]) -> Any:
    """Copy of `config` with every string path under ./load moved under `data_root`."""
    if data_root is None:
        return config
    if isinstance(config, dict):
        return {k: reroot(v, data_root) for k, v in config.items()}
    if isinstance(config, list):
        return [reroot(v, data_root) for v in config]
    if isinstance(config, str) and (config == DEFAULT_DATA_ROOT
                                    or config.startswith(DEFAULT_DATA_ROOT + '/')):
        return os.path.join(data_root, config[len(DEFAULT_DATA_ROOT):].lstrip('/'))
    return config


def apply_overrides(config: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Applies `key.sub=value` overrides in place; values are parsed as YAML. The last key
    may be new (the config's schema then decides whether it is allowed); the sections above
    it must exist.

    Raises:
        ValueError: malformed override, or a section the config does not have.
    """
    for item in overrides:
        if '=' not in item:
            raise ValueError(f"override '{item}' must look like key.sub=value")
        key, value = item.split('=', 1)
        parts = key.split('.')
        node = config
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if not isinstance(node, dict) or (part not in node and not last):
                raise ValueError(f"override '{item}': unknown key "
                                 f"'{'.'.join(parts[:depth + 1])}'")
            if depth == len(parts) - 1:
                node[part] = parse_override_value(item, value)
            else:
                node = node[part]
    return config


# YAML 1.1 reads 1e-4 (no dot) as a string; an override written that way means the number.
NUMBER = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$')


def parse_override_value(item: str, value: str) -> Any:
    """The YAML value of an override, numbers such as 1e-4 read as numbers; ValueError (one
    line) if it is not valid YAML."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"override '{item}': the value is not valid YAML "
                         f"({one_line(str(e))})") from None
    if isinstance(parsed, str) and NUMBER.match(parsed.strip()):
        return float(parsed)
    return parsed


def override_keys(overrides: Iterable[str]) -> List[str]:
    """The key paths that `key.sub=value` overrides set."""
    return [item.split('=', 1)[0] for item in overrides]


def require(config: Dict[str, Any], key: str, source: str = 'config') -> Any:
    """config[key], or a KeyError naming the key and the file."""
    if key not in config:
        raise KeyError(f"{source} is missing the required key '{key}'")
    return config[key]
