"""The schemas of training and test configs: the official configs' keys plus ours (see
utils.schema). The registries are passed in, so that utils imports neither models nor
datasets."""
from typing import Dict

from .registry import Registry
from .schema import Bool, Field, Int, ListOf, Num, Section, Spec, Str
from .training import OPTIMIZERS

EVAL_TYPE = Str(pattern=r'(div2k|benchmark)-[1-9][0-9]*',
                what="'div2k-<scale>' or 'benchmark-<scale>'", nullable=True)
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
    'n_resblocks': Int(0), 'n_feats': Int(1), 'hidden_dim': Int(1), 'width': Int(1),
}
OPTIMIZER = Section({
    'name': Str(sorted(OPTIMIZERS)),
    'args': Section({'lr': Num(0, above=True), 'weight_decay': Num(0), 'eps': Num(0),
                     'betas': ListOf(Num(0, 1)), 'momentum': Num(0), 'dampening': Num(0),
                     'amsgrad': Bool(), 'nesterov': Bool()}),
}, ['name'])


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


def train_schema(models: Registry, datasets: Registry) -> Section:
    """train_liif.py's configs (LIIF, LTE, SRNO)."""
    return Section({
        'train_dataset': data_section(datasets),
        'val_dataset': Section(data_section(datasets).fields,
                               ['dataset', 'wrapper', 'batch_size'], nullable=True),
        'data_norm': NORM, 'eval_type': EVAL_TYPE, 'eval_bsize': Int(1, nullable=True),
        'model': model_spec(models), 'optimizer': OPTIMIZER, 'epoch_max': Int(1),
        'multi_step_lr': Section({'milestones': ListOf(Int(1)), 'gamma': Num(0, above=True)},
                                 ['milestones', 'gamma'], nullable=True),
        'warmup_step_lr': Section({'multiplier': Num(1), 'total_epoch': Int(1)},
                                  ['multiplier', 'total_epoch'], nullable=True),
        'epoch_val': Int(1, nullable=True), 'epoch_save': Int(1, nullable=True),
    }, ['train_dataset', 'model', 'optimizer', 'epoch_max'])


def test_schema(datasets: Registry) -> Section:
    """test.py's configs."""
    return Section({'test_dataset': data_section(datasets, test=True), 'data_norm': NORM,
                    'eval_type': EVAL_TYPE, 'eval_bsize': Int(1, nullable=True)},
                   ['test_dataset'])
