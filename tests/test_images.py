"""Images in as a viewer shows them (EXIF orientation, 16-bit, float), and outputs streamed to
disk equal to the in-memory render; replaced files keep their permissions; Ctrl-C is one line."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

import demo
import models
from conftest import REPO, shared_path
from datasets.image_folder import read_rgb
from inference import render_bands
from scripts import make_lr
from utils import load_checkpoint
from utils.image_io.read import image_size, read_image


def tiny():
    return shared_path('reference', 'vectors', 'tiny_liif.pth')


def smooth(h, w, channels=3, seed=0):
    """A smooth random image in [0, 1], (h, w, channels) float64."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 4 + 2, w // 4 + 2, channels))
    big = np.stack([np.asarray(Image.fromarray(small[..., c].astype(np.float32), 'F').resize(
        (w, h), Image.BICUBIC)) for c in range(channels)], axis=2)
    return np.clip(big, 0, 1).astype(np.float64)


def run_demo(*argv):
    assert demo.main([*map(str, argv), '--model', tiny(), '--quiet']) == 0


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_is_applied_as_pil_does(tmp_path, orientation):
    rgb = (smooth(12, 20) * 255).astype(np.uint8)
    path = tmp_path / 'photo.jpg'
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
    assert np.array_equal(np.round(read_image(str(path)).rgb * 255).astype(np.uint8), expected)
    expected = torch.from_numpy(expected.copy()).permute(2, 0, 1) / 255
    assert torch.equal(read_rgb(str(path)), expected)


def test_rotated_phone_photo_gives_an_upright_output(tmp_path):
    """A 96x64 JPEG tagged 'rotate 90' upscales x2 to 128x192, as the upright image does."""
    rgb = (smooth(64, 96) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / 'phone.jpg', exif=exif, quality=95)
    upright = ImageOps.exif_transpose(Image.open(tmp_path / 'phone.jpg')).convert('RGB')
    upright.save(tmp_path / 'upright.png')
    for name in ('phone.jpg', 'upright.png'):
        run_demo('--input', tmp_path / name, '--output', tmp_path / f'{name}.x2.png', '--scale', 2)
    out = np.asarray(Image.open(tmp_path / 'phone.jpg.x2.png'))
    assert out.shape == (192, 128, 3)
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / 'upright.png.x2.png')))


def test_16_bit_gray_and_float_tiff_are_scaled_to_0_1(tmp_path):
    gray8 = (smooth(16, 12, 1)[..., 0] * 255).round().astype(np.uint8)
    gray16 = gray8.astype(np.uint16) * 257  # the same values at 16 bits
    Image.fromarray(gray8).save(tmp_path / 'g8.png')
    with open(tmp_path / 'g16.png', 'wb') as f:
        png.Writer(12, 16, greyscale=True, bitdepth=16).write(f, gray16.tolist())
    tifffile.imwrite(tmp_path / 'g16.tif', gray16)
    rgb = smooth(16, 12)
    tifffile.imwrite(tmp_path / 'f32.tif', rgb.astype(np.float32), photometric='rgb')
    tifffile.imwrite(tmp_path / 'rgb16.tif', (rgb * 65535).round().astype(np.uint16),
                     photometric='rgb')
    reference = gray8.astype(np.float32) / 255
    for name in ('g16.png', 'g16.tif'):
        image = read_image(str(tmp_path / name))
        assert image.gray and image.bits == 16
        assert np.abs(image.rgb[..., 0] - reference).max() < 1e-6, name
    floats = read_image(str(tmp_path / 'f32.tif'))
    assert floats.bits == 16 and np.abs(floats.rgb - rgb).max() < 1e-6
    assert np.abs(read_image(str(tmp_path / 'rgb16.tif')).rgb - rgb).max() < 1e-5
    assert np.abs(read_rgb(str(tmp_path / 'g16.png'))[0].numpy() - reference).max() < 1e-6


def test_16_bit_and_float_inputs_render_like_their_8_bit_values(tmp_path):
    """The same samples at 8 bits, 16 bits and as floats give the same model input: outputs
    within one 8-bit level (16-bit outputs divided by 257), never black or saturated."""
    rgb8 = (smooth(12, 10) * 255).round().astype(np.uint8)
    Image.fromarray(rgb8).save(tmp_path / 'in8.png')
    tifffile.imwrite(tmp_path / 'in32.tif', rgb8.astype(np.float32) / 255, photometric='rgb')
    with open(tmp_path / 'in16.png', 'wb') as f:
        png.Writer(10, 12, greyscale=False, bitdepth=16).write_array(
            f, (rgb8.astype(np.uint16) * 257).reshape(-1))
    for name in ('in8.png', 'in32.tif', 'in16.png'):
        run_demo('--input', tmp_path / name, '--output', tmp_path / f'{name}.out.tif',
                 '--scale', 3)
    out8 = tifffile.imread(tmp_path / 'in8.png.out.tif').astype(float)
    for name in ('in32.tif', 'in16.png'):
        out16 = tifffile.imread(tmp_path / f'{name}.out.tif')
        assert out16.dtype == np.uint16 and out16.shape == (36, 30, 3)
        assert np.abs(out16 / 257 - out8).max() <= 1, name


def test_make_lr_keeps_16_bit_gray_values(tmp_path):
    gray8 = (smooth(24, 24, 1)[..., 0] * 255).round().astype(np.uint8)
    (tmp_path / 'hr8').mkdir()
    (tmp_path / 'hr16').mkdir()
    Image.fromarray(gray8).save(tmp_path / 'hr8' / 'a.png')
    with open(tmp_path / 'hr16' / 'a.png', 'wb') as f:
        png.Writer(24, 24, greyscale=True, bitdepth=16).write(
            f, (gray8.astype(np.uint16) * 257).tolist())
    for bits in (8, 16):
        make_lr.make_lr(str(tmp_path / f'hr{bits}'), str(tmp_path / f'lr{bits}'), [2], quiet=True)
    lr8 = np.asarray(Image.open(tmp_path / 'lr8' / 'X2' / 'ax2.png')).astype(float)
    _, _, rows, info = png.Reader(filename=str(tmp_path / 'lr16' / 'X2' / 'ax2.png')).asDirect()
    lr16 = np.vstack([np.asarray(r) for r in rows]).astype(float)
    assert info['bitdepth'] == 16 and info['greyscale'] and lr16.shape == (12, 12)
    assert np.abs(lr16 / 257 - lr8).max() <= 1  # not saturated: the mean of the source kept


@pytest.mark.parametrize('ext', ['png', 'tif', 'bmp', 'webp'])
def test_streamed_outputs_equal_the_in_memory_render(tmp_path, ext):
    rgb = (smooth(9, 11) * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'in.png')
    out = tmp_path / f'out.{ext}'
    # Bands of 2 rows (chunk 70 queries < one 37-pixel row x 2), so the writer sees many.
    assert demo.main(['--input', str(tmp_path / 'in.png'), '--output', str(out), '--model',
                      tiny(), '--resolution', '23,37', '--chunk-size', '70', '--quiet']) == 0
    model = models.make(load_checkpoint(tiny())['model'], load_sd=True).eval()
    inp = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    whole = torch.cat([band for _, band in render_bands(model, inp, (23, 37))])
    expected = (whole * 255).round().numpy().astype(np.uint8)
    got = tifffile.imread(out) if ext == 'tif' else np.asarray(Image.open(out).convert('RGB'))
    if ext == 'webp':  # lossy by default: only close
        assert np.abs(got.astype(int) - expected).mean() < 8
    else:
        assert np.array_equal(got, expected)


def test_a_replaced_output_keeps_its_permissions(tmp_path):
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / 'in.png')
    out = tmp_path / 'out.png'
    out.write_bytes(b'old')
    os.chmod(out, 0o600)
    run_demo('--input', tmp_path / 'in.png', '--output', out)
    assert os.stat(out).st_mode & 0o777 == 0o600 and out.read_bytes() != b'old'


def test_output_onto_the_input_needs_overwrite(tmp_path):
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / 'in.png')
    run_demo('--input', tmp_path / 'in.png', '--output', tmp_path / 'in.png', '--overwrite')
    assert Image.open(tmp_path / 'in.png').size == (24, 24)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=['SIGINT', 'SIGTERM', 'SIGHUP'])
def test_ctrl_c_is_one_line_and_leaves_no_file(tmp_path, sig):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / 'in.png')
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'demo.py'), '--input', str(tmp_path / 'in.png'),
         '--output', str(tmp_path / 'out.png'), '--model', tiny(), '--resolution', '8000,8000',
         '--device', 'cpu'], stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    # (an output large enough to be still in writing when the signal comes: at 3000x3000 an
    # idle machine could finish between two looks for the temporary file)
    deadline = time.time() + 60
    while time.time() < deadline and not any(n.startswith('.tmp-') for n in os.listdir(tmp_path)):
        time.sleep(0.2)  # wait until the render has started writing
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.replace('\r', '\n').splitlines()
             if line.strip() and '%|' not in line]
    assert lines[-1] == 'error: interrupted; no output written' and 'Traceback' not in err
    assert sorted(os.listdir(tmp_path)) == ['in.png']


def test_a_non_srgb_icc_profile_is_stated(tmp_path, capsys):
    from PIL import ImageCms
    xyz = ImageCms.ImageCmsProfile(ImageCms.createProfile('XYZ')).tobytes()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
    notes = {}
    for name, icc in (('xyz', xyz), ('srgb', srgb)):
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / f'{name}.png',
                                                            icc_profile=icc)
        capsys.readouterr()
        assert demo.main(['--input', str(tmp_path / f'{name}.png'), '--output',
                          str(tmp_path / f'{name}.out.png'), '--model', tiny()]) == 0
        notes[name] = 'non-sRGB ICC profile' in capsys.readouterr().err
    assert notes == {'xyz': True, 'srgb': False}


def test_a_planar_rgb_tiff_reads_as_its_contiguous_twin(tmp_path):
    """TIFF PlanarConfiguration 2 (the samples plane by plane): the same image, and the same
    size read from its header, as the same pixels stored contiguously."""
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / 'planar.tif', np.moveaxis(rgb, -1, 0), planarconfig='separate',
                     photometric='rgb')
    tifffile.imwrite(tmp_path / 'contig.tif', rgb, photometric='rgb')
    planar, contig = (read_image(str(tmp_path / f'{n}.tif')) for n in ('planar', 'contig'))
    assert planar.rgb.shape == (20, 30, 3) and np.array_equal(planar.rgb, contig.rgb)
    assert image_size(str(tmp_path / 'planar.tif')) == (20, 30)
