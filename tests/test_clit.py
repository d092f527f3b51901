"""CLIT (and LIT, its one-stage form) against the official code: the vectors of
../shared/reference/clit through the official calls and through our interface, the layouts of
the 9 official training configs, the official test.py's Set5 PSNR and SSIM, CLIT's SSIM, and
checkpoints both ways."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
import test as test_script
from conftest import SHARED, load_json, shared_params, shared_path
from utils.cascade import cascade_scales
from test_models import assert_builds_layout
from models.decoder import decode_in_chunks
from utils import load_checkpoint
from utils.metrics import ssim_clit

VECTOR_TOLERANCE = 1e-5


def ref(*parts):
    return shared_path('reference', 'clit', *parts)


def cases():
    return {case['name']: case for case in load_json(ref('index.json'))}


def load_case(name):
    case = cases()[name]
    data = np.load(ref(f'{name}.npz'))
    model = models.make(load_checkpoint(ref(case['checkpoint']))['model'], load_sd=True)
    return model.eval(), {k: torch.from_numpy(data[k]) for k in data.files}


def levels(d):
    """The official list of level grids: coord_level0, ..., then the final coord."""
    return [d[f'coord_level{k}'] for k in range(len(d['level_sizes']) - 1)] + [d['coord']]


def model_cases():
    return sorted(n for n in cases() if n != 'tiny_litpy')


def test_every_case_is_tested():
    # tiny_litpy is the orphan models/lit.py, which nothing official builds (see the README).
    assert len(cases()) == 12 and 'tiny_litpy' in cases()


@pytest.mark.parametrize('name', shared_params(model_cases))
def test_official_calls_match_the_vectors(name):
    model, d = load_case(name)
    with torch.no_grad():
        if 'sample_coord' in d:  # the training call: every stage's prediction
            preds = model(d['inp'], levels(d), d['sample_coord'], d['cell'])
            expected = [d[f'pred_stage{k}'] for k in range(len(preds) - 1)] + [d['pred']]
        else:
            preds = [model.chop_forward(d['inp'], levels(d), d['cell'], int(d['eval_bsize']))]
            expected = [d['pred']]
    assert len(preds) == len(expected)
    for out, exp in zip(preds, expected):
        assert out.shape == exp.shape
        assert (out - exp).abs().max().item() < VECTOR_TOLERANCE


@pytest.mark.parametrize('name', shared_params(lambda: [n for n in model_cases()
                                                        if 'train' not in n]))
def test_our_interface_reads_the_cascade_from_the_cell(name):
    """Flat queries with per-query cells, in chunks (what inference/ does): the levels come
    from the cell, and give the official output."""
    model, d = load_case(name)
    B, H, W, _ = d['coord'].shape
    coord = d['coord'].reshape(B, H * W, 2)
    cell = d['cell'].unsqueeze(1).expand(B, H * W, 2)
    with torch.no_grad():
        feat = model.encode(d['inp'])
        for chunk in (None, 777):
            out = decode_in_chunks(model.decoder(feat, 'fast'), coord, cell, chunk)
            assert (out - d['pred']).abs().max().item() < VECTOR_TOLERANCE


def test_cascade_scale_lists_are_the_official_ones():
    official = load_json(ref('scale_lists.json'))
    assert len(official) == 9
    for scale, expected in official.items():
        assert cascade_scales(float(scale)) == pytest.approx(expected, abs=1e-12)


def layouts():
    return sorted(load_json(ref('layouts-clit.json')).items())


def test_every_layout_is_checked():
    assert len(layouts()) == 9


@pytest.mark.parametrize('config_name,layout', shared_params(layouts, 2))
def test_official_configs_build_official_layouts_in_order(config_name, layout):
    assert_builds_layout(layout, ordered=True)


def test_ssim_is_clits_own():
    d = np.load(ref('ssim_example.npz'))
    a, b = torch.from_numpy(d['img1']), torch.from_numpy(d['img2'])
    assert abs(ssim_clit(a, b).item() - float(d['ssim'])) < 1e-6
    gray = ssim_clit(a.mean(1, keepdim=True), b.mean(1, keepdim=True)).item()
    assert abs(gray - float(d['ssim_gray'])) < 1e-6


def official_numbers():
    rows = {}
    for name in ('psnr.tsv', 'ssim.tsv'):
        with open(ref(name)) as f:
            rows.update(dict(line.rstrip('\n').split('\t') for line in list(f)[1:]))
    return sorted(rows.items())


def test_every_official_number_is_checked():
    assert len(official_numbers()) == 7


@pytest.mark.parametrize('run,value', shared_params(official_numbers, 2))
def test_test_script_gives_the_official_set5_numbers(run, value, capsys, monkeypatch):
    """test.py --protocol clit on the folder's own configs (their data paths are relative to
    the folder, as the official run had them)."""
    checkpoint, config = run.split(' ', 1)
    config = config.replace(' ', '-')
    monkeypatch.chdir(ref())
    code = test_script.main(['--quiet', '--config', f'{config}.yaml', '--model',
                             f'{checkpoint}.pth', '--protocol', 'clit', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip().splitlines()[-1] == f'result: {float(value):.4f}'


def test_ssim_configs_need_the_clit_protocol(capsys, monkeypatch):
    monkeypatch.chdir(ref())
    code = test_script.main(['--quiet', '--config', 'set5-4-ssim.yaml', '--model',
                             'tiny_clit3.pth', '--device', 'cpu'])
    assert code == 2
    assert "eval_type 'ssim-4' is CLIT's" in capsys.readouterr().err


OFFICIAL_LOAD = """
import sys, types, torch
sys.path.insert(0, '.')
# The official SwinIR imports timm at import time; not installed here, and not used by an
# EDSR model: a stand-in module.
for name in ('timm', 'timm.models', 'timm.models.layers'):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules['timm.models.layers'].DropPath = sys.modules['timm.models.layers'].to_2tuple = None
sys.modules['timm.models.layers'].trunc_normal_ = None
import models
ckpt = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
model = models.make(ckpt['model'], load_sd=True).eval()
inp = torch.load(sys.argv[2])
with torch.no_grad():
    out = model.chop_forward(inp['inp'], inp['coords'], inp['cell'], 30000)
torch.save(out, sys.argv[3])
"""


def test_our_checkpoints_load_in_the_official_code(tmp_path):
    """A checkpoint written as our trainer writes it loads in the official CLIT code
    (models.make(load_sd=True), strict), and the official model gives our output."""
    official = os.path.join(SHARED, 'official', 'clit')
    if not os.path.isdir(official):
        pytest.skip('no official CLIT code') if not os.environ.get('CI') else \
            pytest.fail(f'no official CLIT code at {official}')
    from training.checkpoints import checkpoint
    torch.manual_seed(3)
    model, d = load_case('tiny_clit3_x18')
    for p in model.parameters():  # weights of our own, not the vector's
        p.data.add_(0.01 * torch.randn_like(p))
    spec = load_checkpoint(ref('tiny_clit3.pth'))['model']
    config = {'model': {'name': spec['name'], 'args': spec['args']},
              'optimizer': {'name': 'adam', 'args': {'lr': 1e-4}}}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    path = tmp_path / 'ours.pth'
    torch.save(checkpoint(config, model, optimizer, None, 1, 0.0, 0), path)
    torch.save({'inp': d['inp'], 'coords': levels(d), 'cell': d['cell']}, tmp_path / 'inp.pt')
    subprocess.run([sys.executable, '-c', OFFICIAL_LOAD, str(path), str(tmp_path / 'inp.pt'),
                    str(tmp_path / 'out.pt')], cwd=official, check=True, capture_output=True)
    with torch.no_grad():
        ours = model.chop_forward(d['inp'], levels(d), d['cell'], 1000)
    assert (torch.load(tmp_path / 'out.pt') - ours).abs().max().item() < VECTOR_TOLERANCE


def test_fewer_stages_than_levels_run_the_last_stage_on_the_rest():
    """LIT beyond x4: the official test.py crashes (conv_qs[1]); ours decodes the whole scale
    with its one stage, which is the official one-level call (tiny_lit_x12)."""
    model, d = load_case('tiny_lit_x12')
    assert len(cascade_scales(12)) == 2 and model.stages == 1
    B, H, W, _ = d['coord'].shape
    with torch.no_grad():
        out = model(d['inp'], d['coord'].reshape(B, -1, 2),
                    d['cell'].unsqueeze(1).expand(B, H * W, 2))
    assert (out - d['pred']).abs().max().item() < VECTOR_TOLERANCE


def test_bad_cascade_arguments_are_refused():
    spec = load_checkpoint(ref('tiny_clit3.pth'))['model']
    with pytest.raises(ValueError, match='imnet_num .* and conv_num'):
        models.make({'name': 'clit', 'args': {**spec['args'], 'conv_num': 2}})
    with pytest.raises(ValueError, match='not divisible by head'):
        models.make({'name': 'clit', 'args': {**spec['args'], 'head': 3}})




OFFICIAL_BATCHES = """
import random, sys, numpy as np, torch
sys.path.insert(0, '.')
from datasets.cascaded_wrappers import SRImplicitDownsampledCascaded
images = torch.load(sys.argv[1])
random.seed(5); np.random.seed(5); torch.manual_seed(5)
w = SRImplicitDownsampledCascaded(images, inp_size=6, batch_size=2, scale_min=[1, 1, 1],
                                  scale_max=[4, 4, 2], sample_q=50, k=3, augment=True)
out = []
for b in range(4):
    batch = w.collate_fn([w[2 * b], w[2 * b + 1]])
    out.append({'inp': batch['inp'], 'coord': batch['sample_coord'], 'cell': batch['cell'],
                'levels': [tuple(c.shape[1:3]) for c in batch['coords']], 'gt': batch['gt']})
torch.save(out, sys.argv[2])
"""


def test_training_batches_are_the_official_wrappers(tmp_path):
    """Same seed, same images: our CLIT training wrapper draws the official collate_fn's
    batches (per-stage scales, the stage count cycling 3, 1, 2, 3, crops, flips, LR, sampled
    queries), in our flat form."""
    official = os.path.join(SHARED, 'official', 'clit')
    if not os.path.isdir(official):
        pytest.skip('no official CLIT code') if not os.environ.get('CI') else \
            pytest.fail(f'no official CLIT code at {official}')
    import random
    import datasets
    torch.manual_seed(0)
    images = [torch.rand(3, 60 + 3 * i, 70 - 2 * i) for i in range(8)]
    torch.save(images, tmp_path / 'images.pt')
    subprocess.run([sys.executable, '-c', OFFICIAL_BATCHES, str(tmp_path / 'images.pt'),
                    str(tmp_path / 'out.pt')], cwd=official, check=True, capture_output=True)
    expected = torch.load(tmp_path / 'out.pt')
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    ours = datasets.make({'name': 'sr-implicit-downsampled-cascaded', 'args': {
        'inp_size': 6, 'batch_size': 2, 'scale_min': [1, 1, 1], 'scale_max': [4, 4, 2],
        'sample_q': 50, 'k': 3, 'augment': True}}, args={'dataset': images})
    stages = []
    for b, exp in enumerate(expected):
        batch = ours.collate_fn([ours[2 * b], ours[2 * b + 1]])
        assert torch.equal(batch['inp'], exp['inp'])
        assert torch.equal(batch['coord'], exp['coord'])
        assert [tuple(s) for s in batch['levels'].tolist()] == exp['levels'][:-1]
        H, W = exp['levels'][-1]
        assert torch.equal(batch['cell'][:, 0], exp['cell'])
        gt = torch.nn.functional.grid_sample(exp['gt'], exp['coord'].flip(-1).unsqueeze(2),
                                             mode='nearest', align_corners=False)
        assert torch.equal(batch['gt'], gt[..., 0].transpose(1, 2))
        stages.append(len(exp['levels']))
    assert stages == [3, 1, 2, 3]


def test_pre_train_copies_the_stage_before_and_keeps_the_new_stage_fresh():
    from training.checkpoints import load_pre_train
    lit = load_checkpoint(ref('tiny_lit.pth'))['model']
    spec = load_checkpoint(ref('tiny_clit2.pth'))['model']
    torch.manual_seed(0)
    model = models.make({'name': 'clit', 'args': spec['args']})
    fresh_before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = load_pre_train(ref('tiny_lit.pth'), model)
    sd = model.state_dict()
    assert sorted(fresh) == sorted(k for k in sd if k not in lit['sd'])
    assert fresh and all('.1.' in k for k in fresh)  # the second stage's convs and MLP
    for k in sd:
        expected = fresh_before[k] if k in fresh else lit['sd'][k]
        assert torch.equal(sd[k], expected)


def test_latent_bands_at_x12_equal_the_whole_image():
    """The renderer's bands (each band's codes encoded apart, queries moved into its frame)
    give the whole-image output at x12, both stages included: code_reach covers the window,
    the stage convolutions and the resampled level maps."""
    from inference import Renderer
    from inference.loading import load_decoder_and_norm
    from inference.options import RenderOptions
    model, norm = load_decoder_and_norm(ref('tiny_clit3.pth'), torch.device('cpu'))
    torch.manual_seed(0)
    image = torch.rand(1, 3, 24, 20)
    whole = torch.cat([b for _, b in Renderer(model, norm).bands(image, (288, 240))])
    banded = Renderer(model, norm, RenderOptions(band_rows=8))
    plan = banded.plan((24, 20), torch.device('cpu'), (288, 240))
    assert plan.band_rows == 8
    out = torch.cat([b for _, b in banded.bands(image, (288, 240), plan)])
    assert (out - whole).abs().max().item() < 1e-5
