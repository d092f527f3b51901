"""Round 3 of bad input, where the answer is not one `error:` line of a script (those are in
test_bad_inputs.py): the Python API's checks, runs that diverge or are stopped, the viewer's
JSON, save budgets and slow clients, precision notes, TIFF compressions, loss comparisons."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import REPO, shared_path  # noqa: E402

from inference import Renderer  # noqa: E402
from utils import devices  # noqa: E402
from utils.coords import make_coord  # noqa: E402
from utils.image_io import read_image  # noqa: E402


def tiny() -> str:
    return shared_path('reference', 'vectors', 'tiny_liif.pth')


def tiny_renderer() -> Renderer:
    from inference import load_decoder_and_norm
    model, norm = load_decoder_and_norm(tiny(), torch.device('cpu'))
    return Renderer(model, norm)


# --- the Python API --------------------------------------------------------------------------

def test_make_coord_of_an_empty_grid_is_an_error():
    with pytest.raises(ValueError, match=r'integers >= 1, got \(0, 5\)'):
        make_coord((0, 5))
    assert make_coord((np.int64(2), 3)).shape == (6, 2)  # numpy integers are integers


def test_renderer_refuses_an_image_in_0_255_and_empty_band_sizes():
    renderer = tiny_renderer()
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'values in \[0, 1\], got .* \(8-bit values\? divide'):
        renderer.scene(image * 255)
    with pytest.raises(ValueError, match='NaN or infinite'):
        renderer.scene(image.masked_fill(image > 0.5, float('nan')))
    for size in ((0, 16), (16, -4), (16.5, 16)):
        with pytest.raises(ValueError, match='output size must be two integers >= 1'):
            list(renderer.bands(image, size))
    assert renderer.scene(image) is not None  # [0, 1] renders


def test_cmsr_at_x200_stays_in_its_memory_plan(tmp_path, monkeypatch):
    """LMF's CMSR at x200 renders in bands (round 3: it made the whole output grid and died
    in grid_sample): 8x8 -> 1600x1600 with --max-memory 100MB builds no coordinate grid (a
    meshgrid or an interpolated level grid) of more than an eighth of the output."""
    import demo
    Image.open(os.path.join(REPO, 'assets', 'astronaut-128.png')).crop(
        (56, 40, 64, 48)).save(tmp_path / 'in.png')
    grids = []
    meshgrid, interpolate = torch.meshgrid, torch.nn.functional.interpolate

    def recorded(made):
        grids.append(made[0].numel() if isinstance(made, (tuple, list)) else made[0, 0].numel())
        return made
    monkeypatch.setattr(torch, 'meshgrid', lambda *a, **k: recorded(meshgrid(*a, **k)))
    monkeypatch.setattr(torch.nn.functional, 'interpolate',
                        lambda *a, **k: recorded(interpolate(*a, **k)))
    code = demo.main(['--input', str(tmp_path / 'in.png'), '--scale', '200', '--quiet',
                      '--model', shared_path('reference', 'lmf', 'tiny_lmliif.pth'),
                      '--cmsr', shared_path('reference', 'lmf', 's2m-tiny_lmliif.yaml'),
                      '--max-memory', '100MB', '--output', str(tmp_path / 'x200.png')])
    assert code == 0 and Image.open(tmp_path / 'x200.png').size == (1600, 1600)
    assert grids and max(grids) <= 1600 * 1600 // 8, max(grids)


# --- images ------------------------------------------------------------------------------------

@pytest.mark.parametrize('compression', ['tiff_lzw', 'tiff_deflate', 'jpeg'])
def test_compressed_tiffs_read_as_pillow_reads_them(tmp_path, compression):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'a.tif', compression=compression)
    expected = np.asarray(Image.open(tmp_path / 'a.tif').convert('RGB'))
    got = np.round(read_image(str(tmp_path / 'a.tif')).rgb * 255).astype(np.uint8)
    assert np.array_equal(got, expected)


# --- training ----------------------------------------------------------------------------------

def train_config(tmp_path, **top) -> str:
    os.makedirs(tmp_path / 'train', exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
            tmp_path / 'train' / f'{i}.png')
    config = {
        'train_dataset': {
            'dataset': {'name': 'image-folder', 'args': {'root_path': str(tmp_path / 'train'),
                                                         'repeat': 4}},
            'wrapper': {'name': 'sr-implicit-downsampled',
                        'args': {'inp_size': 8, 'scale_max': 3, 'sample_q': 16}},
            'batch_size': 2},
        'model': {'name': 'liif', 'args': {
            'encoder_spec': {'name': 'edsr-baseline', 'args': {
                'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
            'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}},
        'optimizer': {'name': 'adam', 'args': {'lr': 1e-3}}, 'epoch_max': 3, **top}
    with open(tmp_path / 'train.yaml', 'w') as f:
        yaml.safe_dump(config, f)
    return str(tmp_path / 'train.yaml')


def test_a_learning_rate_jump_is_a_divergence_that_keeps_the_last_good_checkpoint(
        tmp_path, capsys):
    """gamma 1e30 after epoch 1: finite but destroyed weights (~1e26) are a divergence (exit
    3), and epoch-last.pth keeps epoch 1."""
    import train_liif
    config = train_config(tmp_path, multi_step_lr={'milestones': [1], 'gamma': 1e30})
    code = train_liif.main(['--config', config, '--save-dir', str(tmp_path / 'save'),
                            '--device', 'cpu', '--quiet'])
    err = capsys.readouterr().err
    assert code == train_liif.DIVERGED_STATUS, err
    assert 'training diverged' in err and 'keeps epoch 1, the last good one' in err
    ckpt = torch.load(tmp_path / 'save' / 'train' / 'epoch-last.pth', weights_only=False)
    assert ckpt['epoch'] == 1
    assert max(v.abs().max().item() for v in ckpt['model']['sd'].values()) < 10


def test_a_torchrun_variable_that_is_not_a_number_is_an_error_line(tmp_path, capsys,
                                                                    monkeypatch):
    import train_liif
    monkeypatch.setenv('WORLD_SIZE', 'two')
    code = train_liif.main(['--config', train_config(tmp_path), '--save-dir',
                            str(tmp_path / 'save'), '--device', 'cpu', '--quiet'])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1
    assert "environment variable WORLD_SIZE='two': expected an integer >= 1" in err
    assert not (tmp_path / 'save').exists()


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGHUP], ids=['SIGTERM', 'SIGHUP'])
def test_a_stopped_training_run_says_where_it_continues(tmp_path, sig):
    config = train_config(tmp_path, epoch_max=1000)
    run = tmp_path / 'save' / 'train'
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'train_liif.py'), '--config',
                             config, '--save-dir', str(tmp_path / 'save'), '--device', 'cpu',
                             '--quiet'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / 'epoch-last.pth').exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith(f"error: interrupted; {run / 'epoch-last.pth'} holds epoch ")
    assert last.endswith(': continue with --resume') and 'Traceback' not in err
    assert not list(run.glob('.tmp-*'))


# --- scripts -----------------------------------------------------------------------------------

def test_compare_losses_with_nan_losses_never_agrees(tmp_path, capsys):
    from scripts import compare_losses
    for name, last in (('a', 0.1), ('b', float('nan'))):
        (tmp_path / name).mkdir()
        rows = [f'1,{i},{0.1 if i < 9 else last}' for i in range(1, 11)]
        (tmp_path / name / 'losses.csv').write_text('epoch,step,loss\n' + '\n'.join(rows))
    for order in (('a', 'b'), ('b', 'a')):
        assert compare_losses.main([str(tmp_path / n) for n in order] + ['--max-diff',
                                                                          '0.02']) == 1
        assert 'not finite' in capsys.readouterr().err


def no_bf16_units(monkeypatch):
    monkeypatch.setattr(devices, 'cpu_flags', lambda: {'avx2'})


def test_bench_scripts_say_when_a_precision_is_emulated(tmp_path, capsys, monkeypatch):
    from scripts import bench_inference, bench_train
    no_bf16_units(monkeypatch)
    assert bench_inference.main(['--model', tiny(), '--size', '8', '--scales', '2',
                                 '--repeats', '1', '--precision', 'bf16', '--device',
                                 'cpu']) == 0
    assert 'bf16 is emulated' in capsys.readouterr().err
    assert bench_train.main(['--config', train_config(tmp_path), '--device', 'cpu',
                             '--steps', '1', '--warmup', '0', '--amp']) == 0
    assert 'bf16 is emulated' in capsys.readouterr().err


def test_bench_inference_prints_no_profiler_noise():
    result = subprocess.run([sys.executable, 'scripts/bench_inference.py', '--model', tiny(),
                             '--size', '8', '--scales', '2', '--repeats', '1', '--device',
                             'cpu'], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert 'USDT' not in out and 'profiler_start' not in out and 'profiler_stop' not in out


# --- the viewer --------------------------------------------------------------------------------

def start_viewer(tmp_path, *extra):
    """(server, 'host:port') of a tiny-model viewer (test_viewer's `start`)."""
    from test_viewer import start
    return start(['--input', os.path.join(REPO, 'assets', 'astronaut-128.png'), '--model',
                  tiny(), '--precision', 'fp32', '--save-dir', str(tmp_path / 'saved'), *extra])


def request(address, path, method='GET', body=None, headers=None):
    """(status, body) of one request (test_viewer's `get`)."""
    from test_viewer import get
    return get(address, path, method, body, headers)[:2]


def strict_json(data: bytes):
    def refuse(name):
        raise ValueError(f'not JSON: {name}')
    return json.loads(data, parse_constant=refuse)


def test_viewer_psnr_of_an_identical_region_is_strict_json(tmp_path, monkeypatch):
    from webviewer import server as viewer_server
    Image.open(os.path.join(REPO, 'assets', 'astronaut-128.png')).resize((256, 256)).save(
        tmp_path / 'hr.png')
    monkeypatch.setattr(viewer_server, 'region_psnr', lambda *a: math.inf)
    server, address = start_viewer(tmp_path, '--hr', str(tmp_path / 'hr.png'))
    try:
        status, data = request(address, '/api/psnr?pane=0&x0=0&y0=0&x1=9&y1=9')
        assert status == 200 and strict_json(data) == {'pane': os.path.basename(tiny()),
                                                       'identical': True, 'psnr': None}
    finally:
        server.shutdown()


def test_viewer_saves_are_limited_per_page_and_per_run(tmp_path, monkeypatch):
    from webviewer import server as viewer_server
    monkeypatch.setattr(viewer_server, 'SAVES_PER_PAGE', 2)
    monkeypatch.setattr(viewer_server, 'MAX_SAVES', 3)
    server, address = start_viewer(tmp_path)
    body = json.dumps({'x0': 0, 'y0': 0, 'x1': 8, 'y1': 8, 'width': 8})

    def save(token):
        return request(address, '/api/save', 'POST', body, {
            'Origin': f'http://{address}', 'X-Viewer-Token': token,
            'Content-Type': 'application/json'})[0]
    try:
        first = strict_json(request(address, '/api/info')[1])['token']
        second = strict_json(request(address, '/api/info')[1])['token']
        assert [save(first), save(first), save(first)] == [200, 200, 429]  # 2 a page
        assert [save(second), save(second)] == [200, 429]                  # 3 a run
        assert save('f' * 32) == 403
        assert len(os.listdir(tmp_path / 'saved')) == 3
    finally:
        server.shutdown()


def test_viewer_cuts_off_clients_that_send_headers_slowly(tmp_path, monkeypatch):
    """More slow clients than request threads, each sending a header line every 0.5 s: the page
    is still served within a few seconds (each is cut off at the request deadline)."""
    from webviewer import server as viewer_server
    monkeypatch.setattr(viewer_server, 'REQUEST_DEADLINE', 1.5)
    server, address = start_viewer(tmp_path)
    host, port = address.split(':')
    stop = threading.Event()

    def slow_client():
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b'GET / HTTP/1.1\r\n')
            try:
                while not stop.is_set():
                    s.sendall(b'X-Slow: 1\r\n')
                    time.sleep(0.5)
            except OSError:
                pass  # cut off: what the server should do
    clients = [threading.Thread(target=slow_client, daemon=True)
               for _ in range(viewer_server.REQUEST_THREADS + 8)]
    try:
        for c in clients:
            c.start()
        time.sleep(0.5)
        start = time.time()
        status, page = request(address, '/')
        assert status == 200 and b'<html' in page.lower()
        assert time.time() - start < 6
    finally:
        stop.set()
        server.shutdown()
