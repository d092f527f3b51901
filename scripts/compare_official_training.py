"""Train one config with one seed through the official trainer and through train_liif.py, and
show that they take the same steps: per-step losses side by side, the first step that
differs, the largest loss and weight differences, and both runs' validation PSNRs.

The official trainers (LIIF: ../shared/gpu/official-liif/train_liif.py; LTE, SRNO, LMF:
../shared/official/<family>/train.py; or --official DIR) run in a subprocess, seeded as a user
would seed them (random, numpy and torch with --seed before their main), on the CPU (`.cuda()`
made a no-op for LIIF's copy, which still calls it), with the DataLoaders' num_workers set to
--num-workers. Their per-step losses are read by recording their L1 loss. Ours runs as
`train_liif.py --seed S --num-workers N --device cpu`. Both read one config file: the given
config with its --set overrides and paths re-rooted under --data-root, and for LTE, SRNO and
LMF the `resume:` key their trainers need (pointing to no file: a fresh start).

Exit status 1 when a loss differs by more than --max-loss-diff, a weight of epoch-last.pth by
more than --max-weight-diff, or a validation PSNR at 4 decimals.

Examples:
  python scripts/compare_official_training.py \\
      --config configs/train-div2k/train_edsr-baseline-liif.yaml --data-root ../shared/data \\
      --set train_dataset.dataset.args.root_path=./load/train/BSDS200 ... --seed 7
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import datasets  # noqa: E402
import models  # noqa: E402
from training import OPTIMIZERS  # noqa: E402
from utils.cli import DATA_ROOT, OVERRIDES, ArgumentParser, number, run_main  # noqa: E402
from utils.config import read_config, train_schema  # noqa: E402

SHARED = os.environ.get('LIIF_SHARED', os.path.join(os.path.dirname(REPO), 'shared'))
# The official trainer of each model: (folder under SHARED, its script).
FAMILIES = {'liif': (os.path.join('gpu', 'official-liif'), 'train_liif'),
            'lte': (os.path.join('official', 'lte'), 'train'),
            'srno': (os.path.join('official', 'srno'), 'train'),
            'lmf': (os.path.join('official', 'lmf'), 'train')}
FAMILY_OF = {'liif': 'liif', 'metasr': 'liif', 'lte': 'lte', 'lte-fast': 'lte',
             'sronet': 'srno', 'lmliif': 'lmf', 'lmlte': 'lmf'}

# Runs in the official folder: seeds as a user would, records every training loss.
OFFICIAL_RUNNER = r'''
import json, os, random, sys, types
import numpy as np, torch
config_path, save_path, out, seed, workers, script = sys.argv[1:7]
sys.path.insert(0, os.getcwd())
os.environ['CUDA_VISIBLE_DEVICES'] = '0'
torch.Tensor.cuda = lambda self, *a, **k: self      # a CPU run of LIIF's unmodified copy
torch.nn.Module.cuda = lambda self, *a, **k: self
# Imported by the official code off the training path of these configs (LTE's and LMF's
# SwinIR: timm; SRNO's feature-map dumps: cv2, matplotlib): stand-ins that fail if anything is used.
class Absent(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        def fail(*a, **k):
            raise ImportError(f'{self.__name__}.{attr} is not installed here')
        return fail
for name in ('timm', 'timm.models', 'timm.models.layers', 'cv2', 'matplotlib',
             'matplotlib.pyplot'):
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = Absent(name)
import yaml
trainer = __import__(script)
losses = []
class RecordedL1(torch.nn.L1Loss):
    def forward(self, pred, gt):
        loss = super().forward(pred, gt)
        losses.append(loss.item())
        return loss
trainer.nn = types.SimpleNamespace(L1Loss=RecordedL1, parallel=torch.nn.parallel)
loader = trainer.DataLoader
def set_workers(*a, **k):  # (SRNO's persistent_workers=True needs workers: off without)
    persistent = k.get('persistent_workers', False) and int(workers) > 0
    return loader(*a, **{**k, 'num_workers': int(workers), 'pin_memory': False,
                         'persistent_workers': persistent})
trainer.DataLoader = set_workers
with open(config_path) as f:
    config = yaml.safe_load(f)
random.seed(int(seed)); np.random.seed(int(seed)); torch.manual_seed(int(seed))
trainer.main(config, save_path)
with open(out, 'w') as f:
    json.dump(losses, f)
'''


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--seed', type=number(int, 0, 2 ** 32 - 1), default=0,
                        help='seed of both runs (default: 0)')
    parser.add_argument('--num-workers', type=number(int, 0), default=0,
                        help="data loading processes of both runs (default: 0)")
    parser.add_argument('--family', choices=sorted(FAMILIES), default=None,
                        help="the official trainer (default: from the config's model)")
    parser.add_argument('--official', default=None, metavar='DIR',
                        help='the official code (default: ../shared/gpu/official-liif for '
                             'LIIF, ../shared/official/<family> for the others)')
    parser.add_argument('--work', default=None, metavar='DIR',
                        help='where both runs write (default: a temporary folder, removed)')
    parser.add_argument('--resume-after', type=number(int, 1), default=None, metavar='K',
                        help='also run ours stopped after epoch K and resumed (--resume), and '
                             'compare it too')
    parser.add_argument('--max-loss-diff', type=number(float, 0), default=1e-5)
    parser.add_argument('--max-weight-diff', type=number(float, 0), default=1e-4)
    parser.add_argument('--show', type=number(int, 0), default=10, help='steps shown (default: 10)')
    for names, spec in (DATA_ROOT, OVERRIDES):
        parser.add_argument(*names, **spec)
    return parser.parse_args(argv)


def shared_config(config: Dict, family: str, work: str) -> str:
    """The one config file both trainers read (see the module docstring)."""
    config = json.loads(json.dumps(config))  # plain types for yaml.safe_load
    if family != 'liif' and not config.get('resume'):
        config['resume'] = os.path.join(work, 'no-such-checkpoint.pth')
    path = os.path.join(work, 'config.yaml')
    with open(path, 'w') as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def run_official(args, family: str, config: str, work: str) -> Dict:
    folder, script = FAMILIES[family]
    official = os.path.abspath(args.official or os.path.join(SHARED, folder))
    if not os.path.isfile(os.path.join(official, script + '.py')):
        raise FileNotFoundError(f"no official trainer at {official}/{script}.py (--official, "
                                'or LIIF_SHARED pointing to ../shared)')
    save, out = os.path.join(work, 'official', '_run'), os.path.join(work, 'official.json')
    os.makedirs(os.path.dirname(save), exist_ok=True)
    result = subprocess.run([sys.executable, '-c', OFFICIAL_RUNNER, config, save, out,
                             str(args.seed), str(args.num_workers), script], cwd=official,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the official trainer failed:\n{result.stderr[-3000:]}")
    with open(out) as f:
        losses = json.load(f)
    return {'losses': losses, 'weights': os.path.join(save, 'epoch-last.pth'),
            'val': val_psnrs(os.path.join(save, 'log.txt'))}


def run_ours(args, config: str, work: str, name: str, stop_after: Optional[int] = None) -> Dict:
    command = [sys.executable, os.path.join(REPO, 'train_liif.py'), '--config', config,
               '--seed', str(args.seed), '--num-workers', str(args.num_workers), '--device',
               'cpu', '--save-dir', os.path.join(work, 'ours'), '--name', name, '--quiet']
    runs = [command] if stop_after is None else [
        command + ['--set', f'epoch_max={stop_after}'], command + ['--resume']]
    for c in runs:
        result = subprocess.run(c, capture_output=True, text=True, cwd=REPO)
        if result.returncode != 0:
            raise RuntimeError(f"train_liif.py failed:\n{result.stderr[-3000:]}")
    folder = os.path.join(work, 'ours', name)
    with open(os.path.join(folder, 'losses.csv')) as f:
        losses = [float(line.split(',')[2]) for line in f.read().splitlines()[1:]]
    return {'losses': losses, 'weights': os.path.join(folder, 'epoch-last.pth'),
            'val': val_psnrs(os.path.join(folder, 'log.txt'))}


def val_psnrs(log: str) -> List[str]:
    """The validation PSNRs of a run's log.txt, as printed (4 decimals)."""
    with open(log) as f:
        return re.findall(r'val: psnr=([-\d.]+)', f.read())


def weight_diff(a: str, b: str) -> float:
    """Largest absolute difference between the weights of two checkpoints."""
    sa = torch.load(a, map_location='cpu', weights_only=False)['model']['sd']
    sb = torch.load(b, map_location='cpu', weights_only=False)['model']['sd']
    if sa.keys() != sb.keys():
        raise ValueError(f"{a} and {b} hold different parameters")
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


def report(args, official: Dict, ours: Dict, label: str) -> bool:
    """Prints the side-by-side comparison; True when within the tolerances."""
    a, b = official['losses'], ours['losses']
    diffs = [abs(x - y) for x, y in zip(a, b)]
    first = next((i for i, d in enumerate(diffs) if d > args.max_loss_diff), None)
    print(f'\n{label}: {len(b)} steps (official: {len(a)})')
    print('| step | official loss | ours | difference |\n|---|---|---|---|')
    shown = sorted(set(range(min(args.show, len(diffs)))) | {len(diffs) - 1} |
                   ({first} if first is not None else set()))
    for i in shown:
        print(f'| {i + 1} | {a[i]:.8f} | {b[i]:.8f} | {diffs[i]:.2e} |')
    weights = weight_diff(official['weights'], ours['weights'])
    print(f'first step differing by more than {args.max_loss_diff:g}: '
          f'{"none" if first is None else first + 1}; largest loss difference '
          f'{max(diffs, default=0):.2e}; largest weight difference (epoch-last.pth) '
          f'{weights:.2e}; validation PSNR official {official["val"]}, ours {ours["val"]}')
    return len(a) == len(b) and first is None and weights <= args.max_weight_diff and \
        official['val'] == ours['val']


def compare(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = os.path.abspath(args.work or tmp)
        os.makedirs(work, exist_ok=True)
        spec = read_config(args.config, args.overrides,
                           train_schema(models.MODELS, datasets.DATASETS, OPTIMIZERS),
                           os.path.abspath(args.data_root or 'load'))  # both run elsewhere
        family = args.family or FAMILY_OF.get(spec['model']['name'])
        if family is None:
            raise ValueError(f"no official trainer known for model '{spec['model']['name']}'; "
                             f"pass --family ({', '.join(sorted(FAMILIES))})")
        config = shared_config(spec, family, work)
        print(f'{args.config} ({family}), seed {args.seed}, num_workers {args.num_workers}',
              flush=True)
        official = run_official(args, family, config, work)
        ok = report(args, official, run_ours(args, config, work, 'run'), 'train_liif.py')
        if args.resume_after is not None:
            resumed = run_ours(args, config, work, 'resumed', args.resume_after)
            ok &= report(args, official, resumed,
                         f'train_liif.py stopped after epoch {args.resume_after}, --resume')
    print('same steps' if ok else 'DIFFERENT')
    return 0 if ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(lambda: compare(parse_args(argv)), statuses={RuntimeError: 2})


if __name__ == '__main__':
    sys.exit(main())
