"""Coordinates, PSNR protocols, configs, devices and checkpoint loading."""
import math
import os

import pytest
import torch

from conftest import REPO, shared_path
from utils import calc_psnr, load_checkpoint, make_coord, resolve_device, save_atomic
from utils.config import apply_overrides, load_config, reroot, require
from utils.metrics import make_metric


def test_make_coord_gives_pixel_centres_row_col():
    coord = make_coord((2, 4), flatten=False)
    assert coord.shape == (2, 4, 2)
    assert torch.allclose(coord[:, 0, 0], torch.tensor([-0.5, 0.5]))
    assert torch.allclose(coord[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert make_coord((2, 4)).shape == (8, 2)


def test_psnr_rgb_without_shave():
    hr = torch.zeros(1, 3, 8, 8)
    assert calc_psnr(hr + 0.1, hr).item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_benchmark_uses_y_weights_and_shaves_scale():
    hr = torch.zeros(1, 3, 12, 12)
    sr = hr + 0.1
    sr[..., :2, :] = 1.0  # border rows within the shave of scale 2 must not count
    y_diff = 0.1 * (65.738 + 129.057 + 25.064) / 256
    expected = -20 * math.log10(y_diff)
    assert calc_psnr(sr, hr, dataset='benchmark', scale=2).item() == pytest.approx(expected,
                                                                                   abs=1e-4)


def test_psnr_div2k_shaves_scale_plus_six():
    hr = torch.zeros(1, 3, 20, 20)
    sr = hr + 0.1
    sr[..., :8, :8] = 1.0  # inside the 2 + 6 border
    assert calc_psnr(sr, hr, dataset='div2k', scale=2).item() == pytest.approx(20.0, abs=1e-4)


def test_unknown_eval_type_names_allowed_forms():
    with pytest.raises(ValueError, match="unknown eval_type 'div2k_4'; expected 'div2k-<scale>'"):
        make_metric('div2k_4')


def test_reroot_moves_only_load_paths():
    config = {'a': ['./load/benchmark/Set5/HR', './loader/x'], 'b': {'c': './load'}, 'd': 3}
    out = reroot(config, '/data')
    assert out == {'a': ['/data/benchmark/Set5/HR', './loader/x'], 'b': {'c': '/data/'}, 'd': 3}
    assert config['a'][0] == './load/benchmark/Set5/HR'


def test_overrides_parse_yaml_add_last_keys_and_reject_unknown_sections():
    config = {'train': {'batch_size': 16}, 'eval_bsize': None}
    apply_overrides(config, ['train.batch_size=2', 'eval_bsize=1000', 'train.batchsize=2'])
    # A new last key is added: the config's schema decides whether it is allowed.
    assert config == {'train': {'batch_size': 2, 'batchsize': 2}, 'eval_bsize': 1000}
    with pytest.raises(ValueError, match="unknown key 'trian'"):
        apply_overrides(config, ['trian.batch_size=2'])


def test_config_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found: .*nope.yaml'):
        load_config(str(tmp_path / 'nope.yaml'))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('a: [1, 2\n')
    with pytest.raises(ValueError, match='not valid YAML'):
        load_config(str(bad))
    with pytest.raises(KeyError, match="cfg.yaml is missing the required key 'test_dataset'"):
        require({}, 'test_dataset', 'cfg.yaml')


def test_resolve_device_cpu_and_errors():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type in ('cpu', 'cuda')
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            resolve_device('cuda')


class Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_load_checkpoint_never_runs_pickled_code(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': Exploit()}, path)
    with pytest.raises(ValueError, match='cannot read checkpoint .*evil.pth'):
        load_checkpoint(str(path))


def test_load_checkpoint_rejects_non_liif_files(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {}}, path)
    with pytest.raises(ValueError, match='is not a LIIF checkpoint'):
        load_checkpoint(str(path))
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_checkpoint(str(tmp_path / 'missing.pth'))


def test_save_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / 'ckpt.pth'
    save_atomic({'model': {'name': 'mlp', 'args': {}, 'sd': {}}}, str(path))
    assert os.listdir(tmp_path) == ['ckpt.pth']
    assert load_checkpoint(str(path))['model']['name'] == 'mlp'


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    from utils.files import atomic_path
    umask = os.umask(0o022)
    try:
        with atomic_path(str(tmp_path / 'out.txt')) as tmp:
            with open(tmp, 'w') as f:
                f.write('x')
    finally:
        os.umask(umask)
    assert (tmp_path / 'out.txt').stat().st_mode & 0o777 == 0o644


def test_every_shipped_config_fits_its_schema():
    import glob
    import datasets
    import models
    from conftest import REPO
    from training import OPTIMIZERS
    from utils.config import load_config, test_schema, train_schema
    from utils.schema import check_config
    paths = sorted(glob.glob(os.path.join(REPO, 'configs', '**', '*.yaml'), recursive=True))
    assert len(paths) > 40
    for path in paths:
        config = load_config(path)
        schema = test_schema(datasets.DATASETS) if 'test_dataset' in config else \
            train_schema(models.MODELS, datasets.DATASETS, OPTIMIZERS)
        check_config(config, schema, path)


def test_precision_the_cpu_would_emulate_is_said_before_the_work(monkeypatch, capsys,
                                                                  tmp_path):
    """On a CPU without bf16 units (no avx512_bf16 / amx_bf16) bf16 is emulated, many times
    slower than fp32: the scripts say so first."""
    import demo
    from utils import devices
    monkeypatch.setattr(devices, 'cpu_flags', lambda: {'avx2', 'avx512f'})
    note = devices.precision_note(torch.device('cpu'), 'bf16')
    assert note.startswith('note: this CPU has no bf16 units') and 'fp32' in note
    assert devices.precision_note(torch.device('cpu'), 'fp32') is None
    monkeypatch.setattr(devices, 'cpu_flags', lambda: {'avx512_bf16'})
    assert devices.precision_note(torch.device('cpu'), 'bf16') is None
    monkeypatch.setattr(devices, 'cpu_flags', lambda: {'avx2'})
    assert demo.main(['--precision', 'bf16', '--input', os.path.join(REPO, 'assets', 'astronaut-128.png'),
                      '--scale', '1.5', '--output', str(tmp_path / 'o.png'),
                      '--model', shared_path('reference', 'vectors', 'tiny_liif.pth')]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith('note: this CPU has no bf16 units')
