"""YAML configs: loading, dotted overrides, re-rooting of ./load paths, and the schemas of
training and test configs (the official configs' keys plus ours, checked by utils.schema).
The registries are passed in, so that utils imports neither models nor datasets."""
import os
from typing import Any, Dict, Iterable, Optional, Sequence

from .yaml_file import parse_yaml, read_yaml
from .registry import Registry
from .schema import Bool, Field, Int, ListOf, Num, Section, Spec, Str, check_config

DEFAULT_DATA_ROOT = './load'


def load_config(path: str, what: str = 'config') -> Dict[str, Any]:
    """Reads a YAML mapping (a config, or `what` the file is) with utils.yaml_file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid YAML (the parser's message on one line), a bound of
            utils.yaml_file broken (aliases, depth, size, a key given twice, not UTF-8), or
            not a mapping.
    """
    config = read_yaml(path, what)
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


def parse_override_value(item: str, value: str) -> Any:
    """The YAML value of an override (utils.yaml_file: 1e-4 is a number); ValueError (one
    line) if it is not valid YAML."""
    return parse_yaml(value, f"override '{item}': the value")


def require(config: Dict[str, Any], key: str, source: str = 'config') -> Any:
    """config[key], or a KeyError naming the key and the file."""
    if key not in config:
        raise KeyError(f"{source} is missing the required key '{key}'")
    return config[key]


# --- schemas ---
EVAL_TYPE = Str(pattern=r'(div2k|benchmark|ssim)-[1-9][0-9]*',
                what="'div2k-<scale>' or 'benchmark-<scale>' (or CLIT's 'ssim-<scale>')",
                nullable=True)
NORM = Section({part: Section({'sub': ListOf(Num()), 'div': ListOf(Num(0, above=True))},
                              ['sub', 'div']) for part in ('inp', 'gt')}, ['inp', 'gt'],
               nullable=True)
# Ranges beyond the constructors' type annotations.
ARG_RANGES: Dict[str, Field] = {
    'inp_size': Int(1, nullable=True), 'sample_q': Int(1, nullable=True),
    'first_k': Int(1, nullable=True), 'repeat': Int(1), 'scale': Int(1),
    'scale_min': Num(1), 'scale_max': Num(1, nullable=True),
    'size_min': Int(1), 'size_max': Int(1, nullable=True),
    'cache': Str(['none', 'bin', 'in_memory']), 'too_small': Str(['error', 'skip']),
    'resize': Str(['pil', 'matlab']), 'pairing': Str(['name', 'sorted']),
    'n_resblocks': Int(0), 'n_feats': Int(1), 'hidden_dim': Int(1), 'width': Int(1),
}
OPTIMIZER_ARGS = Section({'lr': Num(0, above=True), 'weight_decay': Num(0), 'eps': Num(0),
                          'betas': ListOf(Num(0, 1)), 'momentum': Num(0), 'dampening': Num(0),
                          'amsgrad': Bool(), 'nesterov': Bool()})
# Which of those each optimizer takes (training.optim refuses the others).
OPTIMIZER_ARG_NAMES = {'adam': ('lr', 'betas', 'eps', 'weight_decay', 'amsgrad'),
                       'sgd': ('lr', 'momentum', 'dampening', 'weight_decay', 'nesterov')}


class StateDict(Field):
    def allowed(self) -> str:
        return 'a mapping of tensors'

    def check_value(self, value, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, path)


def model_spec(models: Registry, with_sd: bool = False) -> Spec:
    """A model spec; with_sd: a checkpoint's, which also holds the state dict."""
    return Spec(models, extra={'sd': StateDict()} if with_sd else None, ranges=ARG_RANGES)


def data_section(datasets: Registry, test: bool = False) -> Section:
    spec = Spec(datasets, ranges=ARG_RANGES)
    # The test loop takes whole images of different sizes: one per batch.
    batch = Int(1, 1) if test else Int(1)
    return Section({'dataset': spec, 'wrapper': spec, 'batch_size': batch},
                   ['dataset', 'wrapper'] + ([] if test else ['batch_size']))


def train_schema(models: Registry, datasets: Registry, optimizers: Sequence[str]) -> Section:
    """train_liif.py's configs (LIIF, LTE, SRNO, LMF)."""
    return Section({
        'train_dataset': data_section(datasets),
        'val_dataset': Section(data_section(datasets).fields,
                               ['dataset', 'wrapper', 'batch_size'], nullable=True),
        'data_norm': NORM, 'eval_type': EVAL_TYPE, 'eval_bsize': Int(1, nullable=True),
        'model': model_spec(models), 'epoch_max': Int(1),
        'optimizer': Section({'name': Str(sorted(optimizers)), 'args': OPTIMIZER_ARGS}, ['name']),
        'multi_step_lr': Section({'milestones': ListOf(Int(1)), 'gamma': Num(0, above=True)},
                                 ['milestones', 'gamma'], nullable=True),
        'warmup_step_lr': Section({'multiplier': Num(1), 'total_epoch': Int(1)},
                                  ['multiplier', 'total_epoch'], nullable=True),
        'epoch_val': Int(1, nullable=True), 'epoch_save': Int(1, nullable=True),
        # The official LTE, SRNO and LMF configs end with `resume: <its epoch-last.pth>`.
        'resume': Str(what='a checkpoint path', nullable=True),
        # CLIT's configs: start from the weights of the stage before (training.checkpoints).
        'pre_train': Str(what='a checkpoint path', nullable=True),
    }, ['train_dataset', 'model', 'optimizer', 'epoch_max'])


def test_schema(datasets: Registry) -> Section:
    """test.py's configs."""
    return Section({'test_dataset': data_section(datasets, test=True), 'data_norm': NORM,
                    'eval_type': EVAL_TYPE, 'eval_bsize': Int(1, nullable=True)},
                   ['test_dataset'])


def read_config(path: str, overrides: Iterable[str], schema: Field,
                data_root: Optional[str]) -> Dict[str, Any]:
    """A script's config: the YAML file with its `--set` overrides, checked against `schema`
    (ConfigError naming the file and key), ./load paths re-rooted under data_root."""
    overrides = list(overrides)
    config = apply_overrides(load_config(path), overrides)
    check_config(config, schema, path, [item.split('=', 1)[0] for item in overrides])  # keys
    return reroot(config, data_root)
