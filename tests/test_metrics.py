"""Metrics and protocols against the reference implementations' own numbers
(../shared/reference/metrics: BasicSR's calculate_psnr / calculate_ssim and LIIF's calc_psnr on
the official code's outputs, and the official outputs' self-ensembles)."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import test as test_script
from conftest import shared_path
from datasets.wrappers import SRImplicitDownsampled
from datasets.image_folder import ImageFolder
from utils.metrics import make_protocol, perceptual, psnr, ssim

SET5 = ('baby', 'bird', 'butterfly', 'head', 'woman')
PSNR_TOLERANCE, SSIM_TOLERANCE = 1e-4, 1e-5


def reference():
    """{(set, scale, image, protocol): value} of metrics.tsv."""
    with open(shared_path('reference', 'metrics', 'metrics.tsv')) as f:
        return {(r['set'], int(r['scale']), r['image'], r['protocol']): float(r['value'])
                for r in csv.DictReader(f, delimiter='\t')}


def image(path):
    """(1, 3, H, W) float32 in [0, 1]."""
    rgb = np.asarray(Image.open(path).convert('RGB')).astype(np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def hr_of(name, like):
    hr = image(shared_path('data', 'benchmark', 'Set5', 'HR', f'{name}.png'))
    return hr[..., :like.shape[-2], :like.shape[-1]]  # the top-left crop the protocol scores


@pytest.mark.parametrize('scale', [2, 3, 4, 6, 8])
def test_basicsr_psnr_and_ssim_equal_basicsrs_own_on_the_official_8_bit_outputs(scale):
    ref = reference()
    for name in SET5:
        sr = image(shared_path('reference', 'metrics', 'sr', 'Set5', f'x{scale}', f'{name}.png'))
        hr = hr_of(name, sr)
        for channel in ('rgb', 'y'):
            protocol = make_protocol('basicsr', f'benchmark-{scale}', channel == 'y')
            key = ('Set5', scale, name)
            assert abs(psnr(sr, hr, protocol).item() - ref[(*key, f'bsr_psnr_{channel}_u8')]) \
                < PSNR_TOLERANCE
            assert abs(ssim(sr, hr, protocol).item() - ref[(*key, f'bsr_ssim_{channel}_u8')]) \
                < SSIM_TOLERANCE


def test_liif_protocol_gives_liifs_psnr_and_basicsrs_float_ssim():
    """On the official float outputs: LIIF's protocol is the official test.py's PSNR, and its
    SSIM BasicSR's calculate_ssim_pt on the same crop and Y channel."""
    ref = reference()
    outputs = np.load(shared_path('reference', 'metrics', 'float', 'Set5_x4.npz'))
    protocol = make_protocol('liif', 'benchmark-4')
    for name in ('butterfly', 'woman'):
        sr = torch.from_numpy(outputs[name]).permute(2, 0, 1)[None]
        hr = hr_of(name, sr)
        assert abs(psnr(sr, hr, protocol).item() - ref[('Set5', 4, name, 'liif_psnr_y')]) < 1e-4
        assert abs(ssim(sr, hr, protocol).item() - ref[('Set5', 4, name, 'bsr_ssim_y_pt')]) \
            < SSIM_TOLERANCE


def run_test_py(tmp_path, *args):
    out = tmp_path / 'r.csv'
    code = test_script.main(['--model', shared_path('pretrained', 'edsr-baseline-liif.pth'),
                             '--data-root', shared_path('data'), '--quiet', '--results',
                             str(out), *args])
    assert code == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / 'r.json') as f:
        return rows, json.load(f)


@pytest.mark.parametrize('name,channel', [('Set5', 'rgb'), ('Set5', 'y'), ('Set14', 'y')])
def test_test_py_basicsr_protocol_gives_every_reference_value(tmp_path, capsys, name, channel):
    """test.py --protocol basicsr at x4: every image's PSNR and SSIM, their means, the CSV's
    and the JSON's layout, and the console's last two lines."""
    ref = reference()
    rows, summary = run_test_py(
        tmp_path, '--config', f'configs/test/test-{name.lower()}-4.yaml', '--protocol',
        'basicsr', '--metrics', 'psnr,ssim', *(['--y-channel'] if channel == 'y' else []))
    images = sorted({k[2] for k in ref if k[0] == name and k[2] not in ('MEAN', 'MAX')})
    assert sorted(r['image'] for r in rows) == images and list(rows[0]) == \
        ['image', 'scale', 'psnr', 'ssim'] and {r['scale'] for r in rows} == {'4'}
    for r in rows:
        assert abs(float(r['psnr']) - ref[(name, 4, r['image'], f'bsr_psnr_{channel}_u8')]) \
            < PSNR_TOLERANCE
        assert abs(float(r['ssim']) - ref[(name, 4, r['image'], f'bsr_ssim_{channel}_u8')]) \
            < SSIM_TOLERANCE
    means = summary['means']
    assert abs(means['psnr'] - ref[(name, 4, 'MEAN', f'bsr_psnr_{channel}_u8')]) \
        < PSNR_TOLERANCE
    assert abs(means['ssim'] - ref[(name, 4, 'MEAN', f'bsr_ssim_{channel}_u8')]) \
        < SSIM_TOLERANCE
    assert summary['images'] == len(images) and summary['protocol']['name'] == 'basicsr'
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"result: {means['psnr']:.4f}"
    assert lines[-2] == f"ssim: {means['ssim']:.4f}"


def test_the_default_output_is_the_official_number_alone(tmp_path, capsys):
    rows, summary = run_test_py(tmp_path, '--config', 'configs/test/test-set5-4.yaml')
    assert capsys.readouterr().out.strip().splitlines() == ['result: 32.2375']
    assert list(rows[0]) == ['image', 'scale', 'psnr']
    assert abs(summary['means']['psnr'] - 32.2375) < 5e-5


@pytest.mark.parametrize('mode,protocol', [('x8', 'ens8_liif_psnr_y'),
                                           ('rot4', 'ens4rot_liif_psnr_y')])
def test_self_ensembles_give_the_reference_numbers(tmp_path, mode, protocol):
    """EDSR's x8 and Thera's rot4 self-ensemble of the official checkpoint, Set5 x4, the
    first two images (baby, bird): the reference's per-image PSNRs to 4 decimals."""
    ref = reference()
    rows, _ = run_test_py(tmp_path, '--config', 'configs/test/test-set5-4.yaml',
                          '--self-ensemble', mode, '--set',
                          'test_dataset.dataset.args.first_k=2')
    assert [r['image'] for r in rows] == ['baby', 'bird']
    for r in rows:
        assert round(float(r['psnr']), 4) == round(ref[('Set5', 4, r['image'], protocol)], 4)


def test_matlab_lr_equals_the_shipped_lr_bicubic_files():
    """--lr matlab: the downsampling wrapper's x4 LR of Set5 is the LR_bicubic/X4 file."""
    hr = ImageFolder(shared_path('data', 'benchmark', 'Set5', 'HR'))
    lr = ImageFolder(shared_path('data', 'benchmark', 'Set5', 'LR_bicubic', 'X4'))
    wrapper = SRImplicitDownsampled(hr, scale_min=4, resize='matlab')
    for i in range(len(hr)):
        assert torch.equal(wrapper[i]['inp'], lr[i])
    with pytest.raises(ValueError, match='needs an integer scale'):
        SRImplicitDownsampled(hr, scale_min=4.5, resize='matlab')[0]


def random_backbones(folder):
    """torchvision's AlexNet and VGG16 with seeded random weights, under the file names of
    their ImageNet weights."""
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               os.path.join(folder, 'alexnet-owt-7be5be79.pth'))
    torch.save(torchvision.models.vgg16(weights=None).state_dict(),
               os.path.join(folder, 'vgg16-397923af.pth'))


@torch.no_grad()
@pytest.mark.parametrize('metric', ['lpips', 'dists'])
def test_perceptual_metrics_on_a_random_backbone(tmp_path, metric):
    """Shape, determinism and the known properties: distance 0 to itself, symmetric (LPIPS),
    larger for a more distorted image; the protocol's crop and 8 bits applied."""
    random_backbones(str(tmp_path))
    score = perceptual(metric, str(tmp_path), torch.device('cpu'))
    protocol = make_protocol('basicsr', 'benchmark-2')
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 48, 40, generator=g)
    near = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    far = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    d = score(near, x, protocol)
    assert d.shape == (2,) and torch.equal(d, score(near, x, protocol))
    assert score(x, x, protocol).abs().max() < 1e-5
    assert bool((score(far, x, protocol) > d).all())
    if metric == 'lpips':
        assert torch.allclose(score(x, near, protocol), d, atol=1e-6)


def test_a_missing_backbone_is_one_error_line(tmp_path, capsys):
    code = test_script.main(['--config', 'configs/test/test-set5-4.yaml', '--model', 'bicubic',
                             '--data-root', shared_path('data'), '--quiet',
                             '--metrics', 'psnr,lpips', '--metric-weights', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: lpips needs torchvision's ImageNet backbone "
                          "alexnet-owt-7be5be79.pth") and '--metric-weights' in err
