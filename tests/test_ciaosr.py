"""CiaoSR against ../shared/reference/ciaosr (made with the official code, whose source is not
read here): the vectors (whole image, chunks, odd sizes, the non-local branch, the tiled
test), both query paths, the official configs' layouts, the releases' checkpoint formats, the
tiled test's refusals and its streaming form, and test.py --protocol ciaosr."""
import numpy as np
import pytest
import torch

import models
import test as test_script
from conftest import load_json, shared_params, shared_path
from inference import Renderer
from inference.loading import load_decoder_and_norm
from inference.options import RenderOptions
from inference.tiled_test import check_tiles, tiled_predict, tiled_render
from models.decoder import decode_in_chunks
from test_models import assert_builds_layout
from utils import load_checkpoint
from utils.ciaosr_release import CIAOSR_NORM
from utils.coords import make_coord
from utils.metrics import make_protocol, psnr

VECTOR_TOLERANCE = 1e-5
CPU = torch.device('cpu')


def ref(*parts):
    return shared_path('reference', 'ciaosr', *parts)


def cases():
    return {case['name']: case for case in load_json(ref('index.json'))}


def load_case(name):
    model, _ = load_decoder_and_norm(ref(cases()[name]['checkpoint']), CPU)
    data = np.load(ref(f'{name}.npz'))
    return model, {k: torch.from_numpy(data[k]) for k in data.files}


def test_every_case_is_tested():
    assert len(cases()) == 9


@pytest.mark.parametrize('name', shared_params(lambda: sorted(cases())))
def test_official_calls_match_the_vectors(name):
    model, d = load_case(name)
    with torch.no_grad():
        if 'nonlocal_feat' in d:
            feat = model.features(d['inp'])
            assert (feat - d['feat']).abs().max().item() < VECTOR_TOLERANCE
            out, expected = model.cs_attn(feat), d['nonlocal_feat']
        elif 'tile' in d:
            scale, tile, overlap = (int(v) for v in d['tile'])
            out = tiled_predict(model, d['inp'], scale, tile, overlap)
            out, expected = out.flatten(2).transpose(1, 2), d['pred']
        else:
            out, expected = model(d['inp'], d['coord'], d['cell']), d['pred']
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() < VECTOR_TOLERANCE


@pytest.mark.parametrize('name', shared_params(lambda: sorted(
    n for n in cases() if 'tile' not in n and 'nonlocal' not in n)))
def test_fast_path_matches_the_reference_and_the_vectors(name):
    model, d = load_case(name)
    assert model.supports_fast
    with torch.no_grad():
        feat = model.encode(d['inp'])
        reference = model.query(feat, d['coord'], d['cell'])
        for chunk in (None, 777):
            fast = decode_in_chunks(model.decoder(feat, 'fast'), d['coord'], d['cell'], chunk)
            assert (fast - reference).abs().max().item() < VECTOR_TOLERANCE
            assert (fast - d['pred']).abs().max().item() < VECTOR_TOLERANCE


def test_non_local_branch_in_row_blocks_equals_one_block():
    model, _ = load_case('tiny_ciaosr')
    torch.manual_seed(0)
    feat = torch.randn(1, 16, 37, 30)
    with torch.no_grad():
        whole = model.cs_attn(feat)
        attn = model.cs_attn
        x = torch.nn.functional.pad(feat, (0, 0, 0, 1), 'reflect')
        match = attn.conv_match_1(x)[0]
        small = attn.conv_match_2(torch.nn.functional.interpolate(
            x, scale_factor=0.5, mode='bilinear', align_corners=False))[0]
        embed = attn.conv_assembly(x)[0]
        for block in (1, 10 ** 9):  # one row per block, and all rows at once
            out = attn.rebuild(match, small, embed, block_bytes=block)[..., :37, :]
            assert (out - whole[0]).abs().max().item() < 1e-5


def layouts():
    return sorted(load_json(ref('layouts-ciaosr.json')).items())


def test_every_layout_is_checked():
    assert len(layouts()) == 5


@pytest.mark.parametrize('config_name,layout', shared_params(layouts, 2))
def test_official_configs_build_official_layouts_or_are_refused(config_name, layout):
    spec = layout['generator_spec']
    args = {k: v for k, v in spec.items() if k != 'type'}
    if 'state_dict' not in layout:  # the real-world configs: the official code cannot either
        with pytest.raises(ValueError, match='local_ensemble_coord'):
            models.make({'name': spec['type'], 'args': args})
        return
    model = assert_builds_layout(layout, {'name': spec['type'], 'args': args}, ordered=True)
    encoder = sum(p.numel() for n, p in model.named_parameters()
                  if not n.startswith(('imnet_', 'cs_attn')))
    assert encoder == layout['num_params_encoder']


def test_releases_load_as_they_are(tmp_path):
    """mmedit's {'meta', 'state_dict': {'generator.…'}}, a bare generator state dict with a
    'module.' prefix: the same model, and CiaoSR's normalisation."""
    model, norm = load_decoder_and_norm(ref('tiny_ciaosr.pth'), CPU)
    sd = load_checkpoint(ref('tiny_ciaosr.pth'))['model']['sd']
    torch.save({'module.' + k: v for k, v in sd.items()}, tmp_path / 'bare.pth')
    for path in (ref('tiny_ciaosr_mmedit.pth'), tmp_path / 'bare.pth'):
        other, other_norm = load_decoder_and_norm(str(path), CPU)
        assert other_norm == norm == CIAOSR_NORM
        for (k, a), (k2, b) in zip(model.state_dict().items(), other.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
    swinir = load_checkpoint(ref('tiny_ciaosr_swinir.pth'))['model']['sd']
    torch.save({'state_dict': {'generator.' + k: v for k, v in swinir.items()}},
               tmp_path / 'swinir.pth')
    model, _ = load_decoder_and_norm(str(tmp_path / 'swinir.pth'), CPU)
    _, d = load_case('tiny_ciaosr_swinir')
    with torch.no_grad():
        assert (model(d['inp'], d['coord'], d['cell']) - d['pred']).abs().max() < 1e-5


@pytest.mark.parametrize('change,message', [
    (lambda sd: sd.pop('gff.1.bias'), 'missing keys: gff.1.bias'),
    (lambda sd: sd.__setitem__('extra.weight', torch.zeros(1)), 'unexpected keys: extra.weight'),
])
def test_a_missing_or_unexpected_key_is_an_error_naming_it(tmp_path, change, message):
    sd = dict(load_checkpoint(ref('tiny_ciaosr_rdn.pth'))['model']['sd'])
    change(sd)
    torch.save({'meta': {}, 'state_dict': {'generator.' + k: v for k, v in sd.items()}},
               tmp_path / 'release.pth')
    with pytest.raises(ValueError, match=message):
        load_decoder_and_norm(str(tmp_path / 'release.pth'), CPU)


def test_tiles_that_would_leave_nan_are_refused():
    """24x20 at tile 192 / overlap 32: the official code writes NaN into 3840 values."""
    with pytest.raises(ValueError, match='leaves pixels uncovered'):
        check_tiles(24, 20, 192, 32)
    assert check_tiles(36, 34, 192, 32) == (34, 2)  # tiny_ciaosr_tile192's case
    assert check_tiles(20, 20, 192, 32) == (20, 1)  # one tile: nothing uncovered


def test_streamed_tiles_equal_the_tiled_test_under_a_budget():
    model, norm = load_case('tiny_ciaosr')[0], CIAOSR_NORM
    renderer = Renderer(model, norm, RenderOptions(max_memory=40 << 20))
    torch.manual_seed(0)
    image = torch.rand(1, 3, 100, 90)
    plan = renderer.plan((100, 90), CPU, (400, 360))
    assert plan.image_tiles is not None and plan.estimate <= 40 << 20
    bands = list(renderer.bands(image, (400, 360), plan))
    out = torch.cat([band for _, band in bands])
    expected = tiled_render(renderer, image, 4, *plan.image_tiles).view(400, 360, 3)
    assert len(bands) > 1 and (out - expected).abs().max().item() < 1e-6


def test_whole_image_render_equals_the_reference_on_96x96():
    model, _ = load_case('tiny_ciaosr')
    renderer = Renderer(model, CIAOSR_NORM, RenderOptions())
    torch.manual_seed(1)
    image = torch.rand(1, 3, 96, 96)
    plan = renderer.plan((96, 96), CPU, (384, 384))
    assert plan.image_tiles is None
    out = torch.cat([band for _, band in renderer.bands(image, (384, 384), plan)])
    mean = torch.tensor(CIAOSR_NORM['inp']['sub']).view(1, 3, 1, 1)
    coord = make_coord((384, 384)).unsqueeze(0)
    cell = torch.full_like(coord, 2 / 384)
    with torch.no_grad():
        ref_out = model.query(model.encode(image - mean), coord, cell) + mean.view(1, 1, 3)
    assert (out.view(1, -1, 3) - ref_out.clamp(0, 1)).abs().max().item() < 1e-5


def test_protocol_ciaosr_is_the_tiled_test_scored_on_y(capsys):
    """test.py --protocol ciaosr on Set5 x4 gives mmedit's (= BasicSR's) Y PSNR, crop 4, of
    the tiled test's output computed here from its parts (woman's 57x86 LR runs as three
    overlapping tiles), normalised with CiaoSR's own data_norm, not the config's."""
    data = shared_path('data')
    code = test_script.main(['--quiet', '--config', 'configs/test/test-set5-4.yaml', '--model',
                             ref('tiny_ciaosr.pth'), '--data-root', data, '--protocol',
                             'ciaosr', '--device', 'cpu'])
    assert code == 0
    ours = float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    from inference.evaluation import test_loader
    model, norm = load_decoder_and_norm(ref('tiny_ciaosr.pth'), CPU)
    renderer = Renderer(model, norm)
    _, loader = test_loader('configs/test/test-set5-4.yaml', data)
    protocol = make_protocol('ciaosr', 'benchmark-4')
    scores = []
    for batch in loader:
        h, w = batch['inp'].shape[-2:]
        pred = tiled_render(renderer, batch['inp'], 4, 192, 32)
        pred = pred.transpose(1, 2).reshape(1, 3, 4 * h, 4 * w)
        gt = batch['gt'].transpose(1, 2).reshape(1, 3, 4 * h, 4 * w)
        scores.append(psnr(pred, gt, protocol).item())
    assert abs(ours - round(sum(scores) / len(scores), 4)) < 1e-9
