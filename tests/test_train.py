"""train_liif.py: resume equals an uninterrupted run, DDP equals one process, every official
config trains, and bad input is named."""
import glob
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from PIL import Image

import models
import train_liif
import training
from conftest import REPO
from utils import load_checkpoint
from training import make_optimizer
from utils.normalization import IDENTITY_NORM, normalisers

TINY_MODEL = {'name': 'liif', 'args': {
    'encoder_spec': {'name': 'edsr-baseline',
                     'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
    'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}


def write_images(folder, n, size, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (size, size + 3 * i, 3), dtype=np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f'{i:04d}.png'))


def tiny_config(tmp_path, root):
    config = {
        'train_dataset': {
            'dataset': {'name': 'image-folder', 'args': {'root_path': str(root), 'repeat': 2}},
            'wrapper': {'name': 'sr-implicit-downsampled', 'args': {
                'inp_size': 8, 'scale_max': 3, 'augment': True, 'sample_q': 32}},
            'batch_size': 2},
        'val_dataset': {
            'dataset': {'name': 'image-folder', 'args': {'root_path': str(root)}},
            'wrapper': {'name': 'sr-implicit-downsampled', 'args': {
                'inp_size': 8, 'scale_max': 3, 'sample_q': 32}},
            'batch_size': 2},
        'data_norm': {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}},
        'model': TINY_MODEL,
        'optimizer': {'name': 'adam', 'args': {'lr': 1e-3}},
        'epoch_max': 3, 'multi_step_lr': {'milestones': [2], 'gamma': 0.5},
        'epoch_val': 1, 'epoch_save': 2}
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / 'hr'
    write_images(root, 3, 40)
    return tiny_config(tmp_path, root)


def train(tmp_path, config, *extra):
    return train_liif.main(['--config', config, '--save-dir', str(tmp_path / 'runs'),
                            '--device', 'cpu', '--quiet', '--seed', '3', *extra])


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, tiny):
    assert train(tmp_path, tiny, '--name', 'whole') == 0
    assert train(tmp_path, tiny, '--name', 'split', '--set', 'epoch_max=1') == 0
    assert train(tmp_path, tiny, '--name', 'split', '--resume') == 0
    whole = load_checkpoint(str(tmp_path / 'runs/whole/epoch-last.pth'))
    split = load_checkpoint(str(tmp_path / 'runs/split/epoch-last.pth'))
    assert whole['epoch'] == split['epoch'] == 3
    for key, value in whole['model']['sd'].items():
        assert (value - split['model']['sd'][key]).abs().max().item() < 1e-6, key
    names = sorted(os.listdir(tmp_path / 'runs/whole'))
    assert {'config.yaml', 'log.txt', 'epoch-last.pth', 'epoch-2.pth', 'epoch-best.pth',
            'tensorboard'} <= set(names)
    assert not [n for n in names if n.startswith('.tmp')]
    # The checkpoints are in the official format and load as models.
    model = models.make(whole['model'], load_sd=True)
    assert whole['optimizer']['name'] == 'adam' and 'sd' in whole['optimizer']
    assert isinstance(model, models.liif.LIIF)
    # The data_norm it trained with rides along, for demo.py and the viewer.
    assert whole['data_norm'] == (yaml.safe_load(open(tiny)).get('data_norm') or IDENTITY_NORM)


def test_a_configs_resume_key_is_read_as_the_official_trainers_read_it(tmp_path, tiny):
    """`resume: PATH` (every official LTE, SRNO and LMF config): from PATH if it exists,
    else a fresh start; the log says which. An official checkpoint (no scheduler state) has
    its schedule stepped to its epoch."""
    config = yaml.safe_load(open(tiny))
    missing = str(tmp_path / 'save' / '_train' / 'epoch-last.pth')
    with open(tmp_path / 'fresh.yaml', 'w') as f:
        yaml.safe_dump({**config, 'resume': missing, 'epoch_max': 1}, f)
    assert train(tmp_path, str(tmp_path / 'fresh.yaml'), '--name', 'fresh') == 0
    log = (tmp_path / 'runs/fresh/log.txt').read_text()
    assert f"the config's resume: {missing} does not exist: starting fresh" in log

    official = load_checkpoint(str(tmp_path / 'runs/fresh/epoch-last.pth'))
    official = {k: official[k] for k in ('model', 'optimizer', 'epoch')}  # the official keys
    torch.save(official, tmp_path / 'official.pth')
    with open(tmp_path / 'resumed.yaml', 'w') as f:
        yaml.safe_dump({**config, 'resume': str(tmp_path / 'official.pth')}, f)
    assert train(tmp_path, str(tmp_path / 'resumed.yaml'), '--name', 'resumed') == 0
    log = (tmp_path / 'runs/resumed/log.txt').read_text()
    assert 'resumed from' in log and 'epoch 1/3' not in log and 'epoch 2/3, lr=1.00e-03' in log
    assert 'epoch 3/3, lr=5.00e-04' in log  # milestones [2], gamma 0.5: stepped, then on


def test_existing_run_needs_resume(tmp_path, tiny, capsys):
    assert train(tmp_path, tiny, '--name', 'a', '--set', 'epoch_max=1') == 0
    assert train(tmp_path, tiny, '--name', 'a') == 2
    assert 'pass --resume' in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    return {'inp': torch.rand(4, 3, 8, 8, generator=g),
            'coord': torch.rand(4, 32, 2, generator=g) * 2 - 1,
            'cell': torch.full((4, 32, 2), 0.1), 'gt': torch.rand(4, 32, 3, generator=g)}


def fresh_model_and_optimizer():
    # SGD, not Adam: Adam's first step is lr * sign(grad), which turns float rounding in a
    # near-zero gradient into a full-size difference and would hide what DDP does.
    torch.manual_seed(0)
    model = models.make(TINY_MODEL)
    return model, make_optimizer(model.parameters(), {'name': 'sgd', 'args': {'lr': 0.5}})


def one_step(model, optimizer, batch, options):
    training.TrainStep(model, optimizer, normalisers(None, torch.device('cpu')), options)(batch)


def ddp_worker(rank, world_size, port, out_path, options):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    model, optimizer = fresh_model_and_optimizer()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    half = {k: v[rank * 2:(rank + 1) * 2] for k, v in fixed_batch().items()}
    one_step(ddp, optimizer, half, options)
    if rank == 0:
        torch.save(model.state_dict(), out_path)
    # Both ranks tear down together: rank 0 hosts the store, and a rank still leaving the
    # group when it goes aborts. A spawned worker then leaves without running C++ static
    # destructors: at interpreter exit a gloo thread still joinable made std::terminate
    # abort rank 1 in 2 of about 20 runs here ("terminate called without an active
    # exception"), after the step had finished and its result was saved.
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


# The speed-ups work under DDP: a compiled step (TorchDynamo splits the graph at DDP's
# gradient buckets) equals the single-process one too.
@pytest.mark.parametrize('options', [training.StepOptions(), training.StepOptions(compile=True)],
                         ids=['eager', 'compiled'])
def test_one_ddp_step_on_two_processes_equals_one_single_process_step(tmp_path, options):
    out = str(tmp_path / 'ddp.pth')
    mp.spawn(ddp_worker, args=(2, free_port(), out, options), nprocs=2, join=True)
    model, optimizer = fresh_model_and_optimizer()
    one_step(model, optimizer, fixed_batch(), options)
    ddp_sd = torch.load(out, weights_only=True)
    for key, value in model.state_dict().items():
        assert (value - ddp_sd[key]).abs().max().item() < 1e-5, key
    initial = fresh_model_and_optimizer()[0].state_dict()
    assert not torch.equal(ddp_sd['imnet.layers.0.weight'], initial['imnet.layers.0.weight'])


def test_torchrun_trains_on_two_cpu_processes(tmp_path, tiny):
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    result = subprocess.run(
        [torchrun, '--nproc_per_node', '2', '--master_port', str(free_port()),
         os.path.join(REPO, 'train_liif.py'), '--config', tiny, '--save-dir',
         str(tmp_path / 'runs'), '--name', 'ddp', '--device', 'cpu', '--quiet',
         '--set', 'epoch_max=1'], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '2 process(es)' in result.stdout
    ckpt = load_checkpoint(str(tmp_path / 'runs/ddp/epoch-last.pth'))
    assert ckpt['epoch'] == 1 and not any(k.startswith('module.') for k in ckpt['model']['sd'])


def test_two_torchrun_nodes_train_as_one_node_with_two_processes(tmp_path, tiny):
    """Two launchers (--nnodes 2, c10d rendezvous on localhost, gloo), one process each, as a
    user runs torchrun across machines: the weights of one launcher with 2 processes."""
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    train_args = [os.path.join(REPO, 'train_liif.py'), '--config', tiny, '--save-dir',
                  str(tmp_path / 'runs'), '--device', 'cpu', '--quiet', '--set', 'epoch_max=2']
    one = subprocess.run([torchrun, '--nproc_per_node', '2', '--master_port', str(free_port()),
                          *train_args, '--name', 'one'], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert one.returncode == 0, one.stderr[-2000:]
    endpoint = f'localhost:{free_port()}'
    nodes = [subprocess.Popen([torchrun, '--nnodes', '2', '--nproc_per_node', '1',
                               '--rdzv_backend', 'c10d', '--rdzv_endpoint', endpoint,
                               '--rdzv_id', 'twin', *train_args, '--name', 'two'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO) for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-2000:]
    a = load_checkpoint(str(tmp_path / 'runs/one/epoch-last.pth'))['model']['sd']
    b = load_checkpoint(str(tmp_path / 'runs/two/epoch-last.pth'))['model']['sd']
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def official_configs():
    files = glob.glob(os.path.join(REPO, 'configs', 'train-div2k', '**', '*.yaml'), recursive=True)
    files += glob.glob(os.path.join(REPO, 'configs', 'train-celebAHQ', '*.yaml'))
    files += glob.glob(os.path.join(REPO, 'configs', 'train-lmf', '*.yaml'))
    files += glob.glob(os.path.join(REPO, 'configs', 'train-clit', '*.yaml'))
    files += glob.glob(os.path.join(REPO, 'configs', 'train-ciaosr', '*.yaml'))
    return sorted(os.path.relpath(f, REPO) for f in files)


def test_every_official_training_config_is_present():
    # LIIF's 17, LTE's 10 more (lte, lte-fast, rdn-lte, the SwinIR trio, x3 and x4 baselines),
    # SRNO's one, LMF's six (lmliif and lmlte on EDSR-baseline, RDN, SwinIR; not lmciaosr),
    # CLIT's cumulative three (lit, clit2, clit3) and CiaoSR's three encoders.
    assert len(official_configs()) == 40
    names = {os.path.basename(c) for c in official_configs()}
    assert {'train_edsr-baseline-lte.yaml', 'train_edsr-baseline-lte-fast.yaml',
            'train_swinir-lte.yaml', 'train_edsr-sronet.yaml', 'train_rdn-lmliif.yaml',
            'train_swinir-lmlte.yaml'} <= names


@pytest.fixture(scope='module')
def fake_load(tmp_path_factory):
    """Tiny stand-ins for DIV2K and CelebA-HQ in the layout the configs expect."""
    root = tmp_path_factory.mktemp('load')
    for split in ('train', 'valid'):
        write_images(root / 'div2k' / f'DIV2K_{split}_HR', 1, 72)
        for scale in (3, 4):
            write_images(root / 'div2k' / f'DIV2K_{split}_LR_bicubic' / f'X{scale}', 1,
                         72 // scale)
    for size in (128, 256):
        write_images(root / 'celebAHQ' / str(size), 2, 72)
    (root / 'celebAHQ' / 'split.json').write_text(
        json.dumps({'train': ['0000.png'], 'val': ['0001.png']}))
    return root


@pytest.mark.parametrize('config', official_configs())
def test_official_config_runs_one_training_iteration(tmp_path, fake_load, config):
    with open(os.path.join(REPO, config)) as f:
        cfg = yaml.safe_load(f)
    overrides = ['train_dataset.batch_size=1', 'train_dataset.wrapper.args.inp_size=8',
                 'epoch_max=1', 'val_dataset=null', 'epoch_val=null']
    if 'sample_q' in cfg['train_dataset']['wrapper']['args']:
        overrides.append('train_dataset.wrapper.args.sample_q=16')
    if 'repeat' in cfg['train_dataset']['dataset']['args']:
        overrides.append('train_dataset.dataset.args.repeat=1')
    if cfg.get('pre_train'):  # CLIT's later stages start from the stage before's run
        overrides.append('pre_train=null')
    assert train_liif.main(['--config', os.path.join(REPO, config), '--data-root', str(fake_load),
                            '--save-dir', str(tmp_path), '--device', 'cpu', '--quiet',
                            '--set', *overrides]) == 0
    name = os.path.splitext(os.path.basename(config))[0]
    ckpt = load_checkpoint(str(tmp_path / name / 'epoch-last.pth'))
    expected = {k: list(v.shape) for k, v in models.make(cfg['model']).state_dict().items()}
    assert {k: list(v.shape) for k, v in ckpt['model']['sd'].items()} == expected


@pytest.mark.parametrize('problem,message', [
    ('missing-key', r'bad.yaml: optimizer: missing \(required\)'),
    ('empty-folder', 'no images found in'),
    ('missing-folder', 'image folder not found'),
    ('corrupt-image', 'cannot read image .*0000.png'),
])
def test_bad_input_names_the_problem(tmp_path, capsys, problem, message):
    root = tmp_path / 'hr'
    write_images(root, 2, 40)
    config = yaml.safe_load(open(tiny_config(tmp_path, root)))
    if problem == 'missing-key':
        del config['optimizer']
    elif problem == 'empty-folder':
        for f in os.listdir(root):
            os.remove(root / f)
    elif problem == 'missing-folder':
        config['train_dataset']['dataset']['args']['root_path'] = str(tmp_path / 'nowhere')
    else:
        (root / '0000.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(config))
    assert train(tmp_path, str(path), '--set', 'epoch_max=1') == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ')
    assert re.search(message, err), err


def test_warmup_schedule_follows_the_official_srno_schedulers():
    """lr per epoch of SRNO's GradualWarmupScheduler(multiplier 10, total_epoch 5) followed by
    CosineAnnealingLR(T_max = 30 - 5), stepped with the epoch number after each epoch (values
    from the official classes, lr 4e-5)."""
    from training import make_scheduler
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=4e-5)
    scheduler = make_scheduler({'epoch_max': 30, 'warmup_step_lr': {
        'multiplier': 10, 'total_epoch': 5}}, optimizer)
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    expected = {1: 4e-5, 2: 1.12e-4, 4: 2.56e-4, 6: 4e-4, 8: 3.9371663222572626e-4,
                10: 3.752613360087727e-4, 20: 1.625237370828551e-4, 30: 1.577059737104447e-6}
    for epoch, lr in expected.items():
        assert lrs[epoch - 1] == pytest.approx(lr, rel=1e-9), epoch


def test_warmup_and_multi_step_together_are_refused(tmp_path, tiny, capsys):
    config = yaml.safe_load(open(tiny))
    config['warmup_step_lr'] = {'multiplier': 2, 'total_epoch': 1}
    path = tmp_path / 'both.yaml'
    path.write_text(yaml.safe_dump(config))
    assert train(tmp_path, str(path)) == 2
    assert 'give multi_step_lr or warmup_step_lr, not both' in capsys.readouterr().err


def test_a_diverging_run_stops_and_keeps_its_last_finite_checkpoint(tmp_path, tiny, capsys):
    """Epoch 1 trains; at epoch 2 the learning rate jumps to 1e10: the run stops within the
    epoch, exit status 3, one error line, and epoch-last.pth still holds epoch 1 (finite,
    loadable, resumable)."""
    code = train(tmp_path, tiny, '--name', 'boom', '--set', 'epoch_max=3',
                 'multi_step_lr.milestones=[1]', 'multi_step_lr.gamma=1e13')
    err = capsys.readouterr().err
    assert code == train_liif.DIVERGED_STATUS, err
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: epoch 2: ') and 'training diverged' in line, line
    assert 'keeps epoch 1, the last good one' in line and 'Traceback' not in err
    ckpt = load_checkpoint(str(tmp_path / 'runs/boom/epoch-last.pth'))
    assert ckpt['epoch'] == 1
    assert all(bool(torch.isfinite(v).all()) for v in ckpt['model']['sd'].values())
    models.make(ckpt['model'], load_sd=True)
    assert not (tmp_path / 'runs/boom/epoch-2.pth').exists()


def test_set_reads_numbers_written_without_a_dot(tmp_path, tiny):
    """YAML 1.1 reads 1e-4 as a string; --set means the number."""
    assert train(tmp_path, tiny, '--name', 'lr', '--set', 'epoch_max=1',
                 'optimizer.args.lr=1e-4') == 0
    ckpt = load_checkpoint(str(tmp_path / 'runs/lr/epoch-last.pth'))
    assert ckpt['optimizer']['args']['lr'] == 1e-4
    assert ckpt['optimizer']['sd']['param_groups'][0]['lr'] == 1e-4


@pytest.mark.parametrize('change', ['optimizer.args.lr=5e-4', 'multi_step_lr.gamma=0.1',
                                    'multi_step_lr.milestones=[1]'])
def test_resume_with_a_changed_optimizer_or_schedule_is_refused(tmp_path, tiny, capsys, change):
    """A resumed run continues with its saved optimizer and schedule states: a config that
    changes them is refused (one line, nothing written), not half-applied while config.yaml
    claims the new values; extending epoch_max is allowed."""
    assert train(tmp_path, tiny, '--name', 'r', '--set', 'epoch_max=1') == 0
    config_before = (tmp_path / 'runs/r/config.yaml').read_text()
    capsys.readouterr()
    assert train(tmp_path, tiny, '--name', 'r', '--resume', '--set', change) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --resume: the config changes what') and err.count('\n') == 1
    assert change.split('=')[0].split('.')[-1] in err
    assert (tmp_path / 'runs/r/config.yaml').read_text() == config_before
    assert load_checkpoint(str(tmp_path / 'runs/r/epoch-last.pth'))['epoch'] == 1
    assert train(tmp_path, tiny, '--name', 'r', '--resume', '--set', 'epoch_max=2') == 0


def test_validation_that_cannot_score_is_an_error_not_a_nan_in_the_log(tmp_path, tiny, capsys):
    """Validation images too small for the protocol's shave border: the run stops with one
    error line naming the file (before, the log said psnr=nan and training went on)."""
    write_images(tmp_path / 'small', 1, 8)
    code = train(tmp_path, tiny, '--name', 'v', '--set', 'epoch_max=1', 'eval_type=benchmark-4',
                 f'val_dataset.dataset.args.root_path={tmp_path / "small"}',
                 'val_dataset.wrapper.args={scale_min: 4}', 'val_dataset.batch_size=1')
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1 and 'Traceback' not in err, err
    assert 'small/0000.png' in err and 'too small for the benchmark protocol at x4' in err


def test_one_run_folder_one_process_and_stale_temporaries_cleared(tmp_path, tiny, capsys):
    """A second process on a run folder in use is refused (nothing written); the temporary
    files of saves killed half-way are removed when a run starts."""
    import fcntl
    assert train(tmp_path, tiny, '--name', 'l', '--set', 'epoch_max=1') == 0
    run = tmp_path / 'runs/l'
    (run / '.tmp-abc123.pth').write_bytes(b'half a checkpoint')
    with open(run / '.lock', 'a') as held:  # another process's lock, as it holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        capsys.readouterr()
        assert train(tmp_path, tiny, '--name', 'l', '--resume', '--set', 'epoch_max=2') == 2
        err = capsys.readouterr().err
        assert 'is in use by another training process' in err and err.count('\n') == 1
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert train(tmp_path, tiny, '--name', 'l', '--resume', '--set', 'epoch_max=2') == 0
    assert not list(run.glob('.tmp-*'))


def test_a_full_disk_is_one_error_line(tmp_path, tiny):
    """torch.save on a full disk (simulated: it raises ENOSPC): one error line, exit 2, no
    traceback from the log writers' threads or exit handlers, no temporary file left."""
    script = (
        'import errno, sys, torch\n'
        'def full(*args, **kwargs):\n'
        '    raise OSError(errno.ENOSPC, "No space left on device")\n'
        'torch.save = full\n'
        'import train_liif\n'
        f'sys.exit(train_liif.main(["--config", {tiny!r}, "--save-dir", {str(tmp_path)!r}, '
        '"--device", "cpu", "--quiet", "--set", "epoch_max=1"]))\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith('error: no space left to write ') and \
        result.stderr.count('\n') == 1, result.stderr
    assert not list(tmp_path.rglob('.tmp-*')) and not list(tmp_path.rglob('*.pth'))
