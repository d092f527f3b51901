"""train_liif.py takes the official trainers' steps: the same config and seed through the
official LIIF, LTE, SRNO and LMF trainers (../shared/gpu/official-liif, ../shared/official) and
through ours give every step's loss within 1e-5, every weight of epoch-last.pth within 1e-4 and
the same validation PSNRs to 4 decimals (scripts/compare_official_training.py decides)."""
import os

import pytest

from conftest import REPO, shared_path
from scripts import compare_official_training

# The official configs' model shapes; small crops, few images and steps: 3 epochs of 4 steps
# of 4 samples, validation every epoch on 2 crops of Set5.
SMALL = ['train_dataset.dataset.args.root_path=./load/train/BSDS200',
         'train_dataset.dataset.args.first_k=4', 'train_dataset.dataset.args.repeat=4',
         'train_dataset.wrapper.args.inp_size=16',
         'train_dataset.batch_size=4', 'val_dataset.dataset.args.root_path=./load/benchmark/Set5/HR',
         'val_dataset.dataset.args.first_k=2', 'val_dataset.dataset.args.repeat=2',
         'val_dataset.wrapper.args.inp_size=16',
         'val_dataset.batch_size=4', 'epoch_max=3', 'epoch_val=1']
QUERIES = ['train_dataset.wrapper.args.sample_q=128', 'val_dataset.wrapper.args.sample_q=128']
FAMILIES = {
    'liif': ('train-div2k/train_edsr-baseline-liif.yaml', QUERIES),
    'lte': ('train-div2k/train_edsr-baseline-lte.yaml', QUERIES),
    # SRNO's grid wrapper samples an inp_size grid of the HR crop: no eval_type's full grids.
    'srno': ('train-div2k/train_edsr-sronet.yaml', ['eval_type=null']),
    # LMF's trainer makes one modulation per code and query: sample_q = inp_size ** 2.
    'lmf': ('train-lmf/train_edsr-baseline-lmliif.yaml',
            ['train_dataset.wrapper.args.sample_q=256', 'val_dataset.wrapper.args.sample_q=256']),
}


def compare(family, *extra):
    config, queries = FAMILIES[family]
    data = os.path.dirname(shared_path('data', 'train', 'BSDS200'))[:-len('/train')]
    shared_path('data', 'benchmark', 'Set5', 'HR')
    return compare_official_training.main([
        '--config', os.path.join(REPO, 'configs', config), '--data-root', data, '--seed', '7',
        '--set', *SMALL, *queries, *extra])


@pytest.fixture(autouse=True)
def official_code():
    """The official trainers are in ../shared: without it, a failure in CI, a skip elsewhere."""
    if not os.path.isdir(os.path.join(compare_official_training.SHARED, 'official')):
        message = f'the official trainers are not in {compare_official_training.SHARED}'
        (pytest.fail if os.environ.get('CI') else pytest.skip)(message)


@pytest.mark.parametrize('workers', [0, 2])
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_same_steps_as_the_official_trainer(family, workers, capsys):
    """Also, for LIIF without workers: a run stopped after epoch 1 and resumed (--resume)
    ends at the same weights as the official run."""
    resume = ['--resume-after', '1'] if (family, workers) == ('liif', 0) else []
    code = compare(family, '--num-workers', str(workers), *resume)
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.strip().endswith('same steps')
    assert not resume or 'stopped after epoch 1, --resume' in out
