"""demo.py: PSNR equal to test.py's, tiled equals untiled, formats, and one-line errors."""
import os
import shutil
import subprocess
import sys

import numpy as np
import png
import pytest
import torch
from PIL import Image

import demo
import models
import test as test_script
from conftest import REPO, render_normalised, shared_path
from utils import calc_psnr, load_checkpoint, make_coord


def run_demo(capsys, *argv):
    code = demo.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_checkpoint():
    return shared_path('reference', 'vectors', 'tiny_liif.pth')


def write_rgb(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_butterfly_x4_psnr_equals_test_py(capsys, tmp_path, official_checkpoint):
    bench = shared_path('data', 'benchmark', 'Set5')
    root = tmp_path / 'benchmark' / 'Set5'
    (root / 'HR').mkdir(parents=True)
    (root / 'LR_bicubic' / 'X4').mkdir(parents=True)
    shutil.copy(os.path.join(bench, 'HR', 'butterfly.png'), root / 'HR')
    lr = os.path.join(bench, 'LR_bicubic', 'X4', 'butterflyx4.png')
    shutil.copy(lr, root / 'LR_bicubic' / 'X4')
    assert test_script.main(['--config', os.path.join(REPO, 'configs/test/test-set5-4.yaml'),
                             '--model', official_checkpoint, '--data-root', str(tmp_path),
                             '--quiet']) == 0
    expected = float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])

    out = tmp_path / 'butterfly_x4.png'
    code, stdout, _ = run_demo(capsys, '--input', lr, '--output', str(out), '--scale', '4',
                               '--model', official_checkpoint, '--quiet')
    assert code == 0 and str(out) in stdout
    to_tensor = lambda p: torch.from_numpy(np.array(Image.open(p).convert('RGB'))).permute(
        2, 0, 1).unsqueeze(0).float() / 255
    psnr = calc_psnr(to_tensor(out), to_tensor(root / 'HR' / 'butterfly.png'),
                     dataset='benchmark', scale=4).item()
    # The demo writes 8-bit images; rounding to 1/255 moves PSNR by a few thousandths of a dB.
    assert abs(psnr - expected) < 0.01


@pytest.mark.parametrize('impl', ['fast', 'reference'])
def test_tiled_equals_untiled_for_anisotropic_size(impl, official_checkpoint):
    model = models.make(load_checkpoint(official_checkpoint)['model'], load_sd=True).eval()
    inp = torch.rand(1, 3, 11, 14, generator=torch.Generator().manual_seed(0)) * 2 - 1
    size = (29, 47)  # x2.64 by x3.36
    whole = render_normalised(model, inp, size, chunk_size=10 ** 6, impl=impl)
    for tile in (47, 100, 13):  # one row, rows plus a remainder, less than a row
        tiled = render_normalised(model, inp, size, chunk_size=tile, impl=impl)
        assert tiled.shape == (29, 47, 3)
        assert (tiled - whole).abs().max().item() < 1e-6


def test_gray_input_gives_gray_output(capsys, tmp_path):
    src = tmp_path / 'gray.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7), dtype=np.uint8)).save(src)
    out = tmp_path / 'out.png'
    assert run_demo(capsys, '--input', str(src), '--output', str(out), '--scale', '2',
                    '--model', tiny_checkpoint())[0] == 0
    img = Image.open(out)
    assert img.mode == 'L' and img.size == (14, 18)


def test_rgba_keeps_alpha_upscaled_bicubically(capsys, tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
    src = tmp_path / 'rgba.png'
    Image.fromarray(rgba, 'RGBA').save(src)
    out = tmp_path / 'out.webp'
    assert run_demo(capsys, '--input', str(src), '--output', str(out), '--resolution', '20,25',
                    '--model', tiny_checkpoint())[0] == 0
    img = Image.open(out)
    assert img.mode == 'RGBA' and img.size == (25, 20)


def test_16_bit_png_stays_16_bit(capsys, tmp_path):
    rng = np.random.default_rng(2)
    rgb16 = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    src = tmp_path / 'deep.png'
    with open(src, 'wb') as f:
        png.Writer(5, 6, greyscale=False, bitdepth=16).write_array(f, rgb16.reshape(-1))
    out = tmp_path / 'deep_x3.png'
    assert run_demo(capsys, '--input', str(src), '--output', str(out), '--scale', '3',
                    '--model', tiny_checkpoint())[0] == 0
    width, height, rows, info = png.Reader(filename=str(out)).asDirect()
    values = np.vstack([np.asarray(r) for r in rows])
    assert (width, height, info['bitdepth'], info['planes']) == (15, 18, 16, 3)
    assert len(np.unique(values % 256)) > 16  # real 16-bit values, not 8-bit ones scaled


@pytest.mark.parametrize('name,argv,message', [
    ('missing', ['--input', '{tmp}/none.png'], 'input not found'),
    ('not-image', ['--input', '{tmp}/notes.png'], 'cannot read image'),
    ('truncated', ['--input', '{tmp}/cut.png'], 'cannot read image'),
    ('zero', ['--resolution', '0,10'], 'output size must be positive'),
    ('negative', ['--scale', '-2'], 'must be one or two positive numbers'),
    ('below-one', ['--scale', '0.5'], 'is below 1'),
    ('bad-folder', ['--output', '{tmp}/no/such/dir/out.png'], 'output folder does not exist'),
    ('bad-extension', ['--output', '{tmp}/out.xyz'], "cannot write '.xyz' images"),
    ('not-liif', ['--model', '{tmp}/encoder.pth'],
     "holds a 'edsr-baseline' model, which does not decode queries; expected one of: "
     "LocalImplicitSREDSR, LocalImplicitSRRDN, LocalImplicitSRSWINIR, bicubic, ciaosr, clit, "
     "liif, lmliif, lmlte, lte"),
    ('not-checkpoint', ['--model', '{tmp}/notes.png'], 'is a text file, not a checkpoint'),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, name, argv, message):
    write_rgb(tmp_path / 'good.png', 8, 8)
    (tmp_path / 'notes.png').write_text('not an image')
    data = (tmp_path / 'good.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    encoder = {'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 8}}
    torch.save({'model': {**encoder, 'sd': models.make(encoder).state_dict()}},
               tmp_path / 'encoder.pth')
    before = set(os.listdir(tmp_path))
    defaults = {'--input': str(tmp_path / 'good.png'), '--output': str(tmp_path / 'out.png'),
                '--model': tiny_checkpoint()}
    argv = [a.format(tmp=tmp_path) for a in argv]
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    code, out, err = run_demo(capsys, *argv)
    assert code == 2
    assert err.startswith('error: ') and message in err and err.count('\n') == 1
    assert set(os.listdir(tmp_path)) == before  # no output, no temporary file


def test_default_run_upscales_the_bundled_sample(tmp_path):
    model = os.path.join(REPO, 'pretrained', 'edsr-baseline-liif.pth')
    if not os.path.exists(model):
        if os.environ.get('CI'):
            pytest.fail(f'{model} missing: scripts/setup.sh fetches it')
        pytest.skip(f'{model} missing: run scripts/setup.sh')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'demo.py')], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = tmp_path / 'outputs' / 'astronaut-128_512x512.png'
    assert 'wrote outputs/astronaut-128_512x512.png' in result.stdout
    assert Image.open(out).size == (512, 512)


def platform_model(name):
    path = shared_path('reference', 'platform', f'{name}.pth')
    return path, models.make(load_checkpoint(path)['model'], load_sd=True).eval()


@pytest.mark.parametrize('name', ['tiny_lte', 'tiny_lte_fast', 'tiny_swinir_lte', 'tiny_srno'])
def test_demo_upscales_with_every_platform_model(capsys, tmp_path, name):
    write_rgb(tmp_path / 'in.png', 13, 17)
    out = tmp_path / 'out.png'
    code, stdout, err = run_demo(capsys, '--input', str(tmp_path / 'in.png'), '--output',
                                 str(out), '--scale', '2.5', '--model', platform_model(name)[0],
                                 '--quiet', '--chunk-size', '100')
    assert code == 0, err
    assert Image.open(out).size == (42, 32)


@pytest.mark.parametrize('name', ['tiny_lte', 'tiny_lte_fast', 'tiny_srno'])
def test_banded_render_equals_one_whole_grid_call(name):
    """Bands of rows change nothing, SRNO included (it is decoded in one band)."""
    _, model = platform_model(name)
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 9, 11) * 2 - 1
    H, W = 23, 31
    with torch.no_grad():
        banded = render_normalised(model, inp, (H, W), chunk_size=70)
        coord = make_coord((H, W)).unsqueeze(0)
        cell = torch.tensor([2 / H, 2 / W]).expand(1, H * W, 2)
        whole = model.query(model.encode(inp), coord, cell)
    whole = (whole * 0.5 + 0.5).clamp(0, 1).view(H, W, 3)
    assert (banded - whole).abs().max().item() < 1e-5


def test_swinir_render_follows_lte_window_protocol():
    """demo's window padding gives LTE's --window output: the input mirror-padded to
    (h // N + 1) * N, the padded image's grid decoded at the integer scale, then cropped."""
    _, model = platform_model('tiny_swinir_lte')
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 10, 7) * 2 - 1
    with torch.no_grad():  # x3, window 4: 10x7 is padded to 12x8
        banded = render_normalised(model, inp, (30, 21), chunk_size=90, window=4)
        padded = torch.cat([inp, inp.flip(-2)], -2)[..., :12, :]
        padded = torch.cat([padded, padded.flip(-1)], -1)[..., :8]
        coord = make_coord((36, 24)).unsqueeze(0)
        cell = torch.tensor([2 / 36, 2 / 24]).expand(1, 36 * 24, 2)
        official = model(padded, coord, cell).view(36, 24, 3)[:30, :21]
    assert (banded - (official * 0.5 + 0.5).clamp(0, 1)).abs().max().item() < 1e-5


def test_swinir_input_too_small_for_its_window_is_one_line(capsys, tmp_path):
    write_rgb(tmp_path / 'tiny.png', 1, 5)
    out = tmp_path / 'out.png'
    code, _, err = run_demo(capsys, '--input', str(tmp_path / 'tiny.png'), '--output', str(out),
                            '--model', platform_model('tiny_swinir_lte')[0], '--quiet')
    assert code == 2 and not out.exists()
    assert err == ("error: window 4: a 1x5 input cannot be mirror-padded to 4x8 (LTE's protocol "
                   "pads by up to one window; each side needs at least 2 pixels)\n")


@pytest.mark.parametrize('checkpoint', ['vectors/tiny_liif.pth', 'platform/tiny_lte.pth'])
def test_encoder_tiles_give_the_untiled_output(capsys, tmp_path, checkpoint):
    path = shared_path('reference', *checkpoint.split('/'))
    model = models.make(load_checkpoint(path)['model'], load_sd=True).eval()
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 29, 23) * 2 - 1
    whole = render_normalised(model, inp, (70, 61), chunk_size=500)
    tiled = render_normalised(model, inp, (70, 61), chunk_size=500, encoder_tile=6)
    assert (tiled - whole).abs().max().item() < 1e-5
    write_rgb(tmp_path / 'in.png', 29, 23)
    outputs = []
    for tile in ('0', '6'):
        out = tmp_path / f'out{tile}.png'
        code, _, err = run_demo(capsys, '--input', str(tmp_path / 'in.png'), '--output',
                                str(out), '--scale', '3', '--model', path, '--quiet',
                                '--encoder-tile', tile)
        assert code == 0, err
        outputs.append(np.asarray(Image.open(out)).astype(int))
    diff = np.abs(outputs[0] - outputs[1])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


@pytest.mark.parametrize('checkpoint', ['vectors/tiny_liif.pth', 'platform/tiny_lte.pth'])
def test_a_memory_budget_gives_the_unbudgeted_output(capsys, tmp_path, checkpoint):
    """5 MB for a 96x80 input: encoder tiles of 16-32 rows and latent bands (the plan is
    printed), the PNG equal to the whole-image run's or one level off in under 0.01%."""
    path = shared_path('reference', *checkpoint.split('/'))
    write_rgb(tmp_path / 'in.png', 96, 80)
    outputs = []
    for budget in (None, '5MB'):
        out = tmp_path / f'out{budget}.png'
        argv = ['--input', str(tmp_path / 'in.png'), '--output', str(out), '--scale', '2.5',
                '--model', path] + (['--max-memory', budget] if budget else [])
        code, _, err = run_demo(capsys, *argv)
        assert code == 0, err
        assert ('encoder tiles of' in err) == (budget is not None)
        outputs.append(np.asarray(Image.open(out)).astype(int))
    diff = np.abs(outputs[0] - outputs[1])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


@pytest.mark.parametrize('budget,message', [
    ('1KB', 'is 80x96: decoding it needs 330.0 KB, above the 1.0 KB memory limit'),
    ('400KB', 'error: a memory budget of 400.0 KB is too small for this model on a 80x96 '
              'input: it needs at least '),
    ('inf', "error: argument --max-memory: memory size must be finite, got 'inf'"),
    ('0', "error: argument --max-memory: memory size must be at least 1 byte, got '0'"),
    ('0.5', "error: argument --max-memory: memory size must be at least 1 byte, got '0.5'"),
    ('lots', "error: argument --max-memory: bad memory size 'lots'; e.g. 512MB or 2GB")])
def test_bad_memory_budgets_are_one_line(capsys, tmp_path, budget, message):
    write_rgb(tmp_path / 'in.png', 96, 80)
    out = tmp_path / 'out.png'
    try:
        code, _, err = run_demo(capsys, '--input', str(tmp_path / 'in.png'), '--output',
                                str(out), '--model', tiny_checkpoint(), '--max-memory', budget)
    except SystemExit as e:  # argparse's errors: one line too (utils.cli.ArgumentParser)
        code, err = e.code, capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert message in err and err.count('\n') == 1
