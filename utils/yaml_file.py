"""The one YAML reader of every YAML file and value we are handed (configs, --set values, the
config.yaml beside a checkpoint, CMSR tables): yaml.safe_load's language, with

* bounded work: at most MAX_ALIASES aliases, MAX_DEPTH levels of nesting and MAX_NODES
  values once aliases are expanded (a "billion laughs" alias bomb or 20,000 nested lists are
  refused before they are built);
* no silent overwrite: a key given twice in one mapping is an error naming both lines;
* numbers as a reader means them: `1e-4` (YAML 1.1 reads a number without a dot as a
  string) is the number 0.0001;
* errors on one line, naming the file (or the value's source) and the line.
"""
import re
from typing import Any

import yaml

MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_BYTES = 4 << 20  # a config is a few kB; a table a few hundred

# YAML 1.1 floats need a dot and a signed exponent; these are numbers too (1e-4, 1.5e3).
EXPONENT_FLOAT = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$')


def expanded_size(node, sizes=None) -> int:
    """Values under a composed node with every alias expanded (shared nodes counted as
    often as they are referenced), computed once per node."""
    sizes = {} if sizes is None else sizes
    if id(node) not in sizes:
        children = node.value if isinstance(node, yaml.CollectionNode) else []
        flat = [c for pair in children for c in pair] if isinstance(
            node, yaml.MappingNode) else children
        sizes[id(node)] = 1 + sum(expanded_size(c, sizes) for c in flat)
    return sizes[id(node)]


class _Loader(yaml.SafeLoader):
    """SafeLoader with the bounds above."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name): refused, as "
                                     "an alias bomb would expand beyond any memory")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels (line "
                                     f"{mark.line + 1}): refused")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES} values once its aliases are "
                                 "expanded: refused (an alias bomb?)")
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: yaml's own error follows
                break
            if first is not None:
                raise yaml.YAMLError(f"the key '{key}' is given twice (lines {first + 1} and "
                                     f"{key_node.start_mark.line + 1}): which one is meant?")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver('tag:yaml.org,2002:float', EXPONENT_FLOAT,
                              list('-+0123456789'))


def parse_yaml(text: str, source: str) -> Any:
    """The value of YAML `text`; ValueError (one line, naming `source`) if it is not valid or
    breaks a bound."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise ValueError(f"{source}: nested too deeply to read") from None
    except yaml.YAMLError as e:
        message = ' '.join(str(e).split())
        raise ValueError(f"{source} is not valid YAML: {message}") from None


def read_yaml(path: str, what: str = 'config') -> Any:
    """The value of a YAML file (UTF-8, at most MAX_BYTES); FileNotFoundError or ValueError
    naming the file."""
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a YAML file") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{what} {path} is larger than {MAX_BYTES >> 20} MB: not a config")
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {e.start}: "
                         f"{data[e.start:e.start + 1]!r}); save it as UTF-8") from None
    return parse_yaml(text, f"{what} {path}")
