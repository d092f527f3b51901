"""LMF (lmliif, lmlte, lmmlp, CMSR) against the official code: reference vectors through the
official calls, state-dict layouts, the official test script's PSNRs, the official table
maker's tables; the renderer, training and errors."""
import os

import numpy as np
import pytest
import torch
import yaml

import models
import test as test_script
from conftest import LOCAL_REFERENCE, load_json, shared_params, shared_path, vector_device
from inference import RenderOptions, Renderer
from utils.normalization import OFFICIAL_NORM
from inference.cmsr import load_tables
from test_models import assert_builds_layout
from test_platform import assert_fast_path_has_reference_gradients
from utils import load_checkpoint
from utils.coords import make_coord

VECTOR_TOLERANCE = 1e-5
PSNR_TOLERANCE = 0.0005
CMSR_SPEC = {'mse_threshold': 2e-5, 'log': False}
LEFT_OUT = 'lmciaosr'  # LMF's CiaoSR variant is not implemented (see the README)


def lmf(*parts):
    return shared_path('reference', 'lmf', *parts)


def cases():
    return {case['name']: case for case in load_json(lmf('index.json'))}


def table_of(checkpoint):
    return load_tables(lmf('s2m-' + checkpoint.replace('.pth', '.yaml')))


def load_case(name, cmsr=False):
    case = cases()[name]
    data = np.load(lmf(f'{name}.npz'))
    spec = load_checkpoint(lmf(case['checkpoint']))['model']
    if cmsr:
        spec = dict(spec, args=dict(spec['args'], cmsr_spec=dict(
            CMSR_SPEC, s2m_tables=table_of(case['checkpoint']))))
    model = models.make(spec, load_sd=True)
    device = vector_device()
    return model.eval().to(device), {k: torch.from_numpy(data[k]).to(device) for k in data.files}


def test_every_lmf_case_is_tested():
    assert len(cases()) == 10


@pytest.mark.parametrize('impl', ['reference', 'fast'])
@pytest.mark.parametrize('name', shared_params(lambda: sorted(cases())))
def test_outputs_match_official_lmf_vectors(name, impl):
    """The official calls: model(inp, coord, cell) in eval mode, with bsize=500, in training
    mode (the official query_rgb path), and built with a cmsr_spec (CMSR beyond x4)."""
    model, d = load_case(name, cmsr='cmsr' in name)
    kwargs = {'bsize': 500} if name.endswith('_bsize500') else {}
    if name.endswith('_train'):
        model.train()
    with torch.no_grad():
        out = model(d['inp'], d['coord'], d['cell'], impl=impl, **kwargs)
    assert out.shape == d['pred'].shape
    assert (out - d['pred']).abs().max().item() < VECTOR_TOLERANCE


@pytest.mark.parametrize('model_name', ['lmliif', 'lmlte'])
def test_cmsr_case_differs_from_plain_decoding(model_name):
    """The CMSR vectors test CMSR: without it the output is another one."""
    model, d = load_case(f'tiny_{model_name}_cmsr_x12')
    with torch.no_grad():
        plain = model(d['inp'], d['coord'], d['cell'])
    assert (plain - d['pred']).abs().max().item() > 1e-2


def layouts():
    return sorted(load_json(lmf('layouts-lmf.json')).items())


def test_every_lmf_layout_is_checked_or_named_as_left_out():
    names = [name for name, _ in layouts()]
    assert len(names) == 9
    assert sorted(n for n in names if LEFT_OUT in n) == [
        f'train_{e}-lmciaosr.yaml' for e in ('edsr-baseline', 'rdn', 'swinir')]


@pytest.mark.parametrize('config_name,layout', shared_params(
    lambda: [(n, v) for n, v in layouts() if LEFT_OUT not in n], 2))
def test_official_lmf_configs_build_official_layouts(config_name, layout):
    assert_builds_layout(layout)
    with torch.device('meta'):
        model = models.make(layout['model_spec'])
    assert list(model.state_dict()) == list(layout['state_dict'])  # the official order too
    with open(os.path.join('configs', 'train-lmf', config_name)) as f:
        assert yaml.safe_load(f)['model'] == layout['model_spec']


def test_lmciaosr_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown model 'lmciaosr'"):
        models.make({'name': 'lmciaosr', 'args': {}})


# --- the official test script's PSNRs ---

def official_psnr():
    with open(lmf('psnr.tsv')) as f:
        rows = [line.rstrip('\n').split('\t') for line in f][1:]
    return {run: float(psnr) for run, psnr in rows}


X4 = ['--set', 'test_dataset.wrapper.args.scale_min=4', 'eval_type=benchmark-4']


def psnr_runs():
    runs = {}
    for m in ('lmliif', 'lmlte'):
        runs[f'tiny_{m} set5-4'] = (m, X4)
        runs[f'tiny_{m} set5-12 scale_max4'] = (m, ['--scale-max', '4'])
        runs[f'tiny_{m} set5-12 scale_max4 cmsr'] = (
            m, ['--scale-max', '4', '--cmsr', lmf(f's2m-tiny_{m}.yaml')])
    return runs


def run_test_script(capsys, *argv):
    code = test_script.main(['--quiet', '--data-root', shared_path('data'), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_official_lmf_psnr_run_is_tested():
    assert set(official_psnr()) == set(psnr_runs())


@pytest.mark.parametrize('run', sorted(psnr_runs()))
def test_test_script_gives_the_official_lmf_psnr(capsys, run):
    model_name, extra = psnr_runs()[run]
    code, out, err = run_test_script(capsys, '--config', 'configs/test/test-set5-12.yaml',
                                     '--model', lmf(f'tiny_{model_name}.pth'), *extra)
    assert code == 0, err
    result = float(out.strip().splitlines()[-1].split()[-1])
    assert abs(result - official_psnr()[run]) < PSNR_TOLERANCE, result


def test_cmsr_on_a_model_without_modulations_is_one_error_line(capsys, official_checkpoint):
    code, out, err = run_test_script(capsys, '--config', 'configs/test/test-set5-12.yaml',
                                     '--model', official_checkpoint,
                                     '--cmsr', lmf('s2m-tiny_lmliif.yaml'))
    assert code == 2 and out == ''
    assert err.startswith('error: --cmsr needs an LMF model') and err.count('\n') == 1


@pytest.mark.parametrize('content,message', [
    ('12: {1: 0.1, 2: nope}', 'must be a positive decode scale'),
    ('[1, 2]', 'must be a YAML mapping, got list'),
    ('12: [', 'not valid YAML'),
])
def test_malformed_cmsr_table_is_one_error_line(capsys, tmp_path, content, message):
    table = tmp_path / 'table.yaml'
    table.write_text(content)
    code, out, err = run_test_script(capsys, '--config', 'configs/test/test-set5-12.yaml',
                                     '--model', lmf('tiny_lmliif.pth'), '--cmsr', str(table))
    assert code == 2 and out == '' and err.count('\n') == 1
    assert err.startswith('error: ') and message in err


# --- the table maker against the official init_cmsr.py ---

@pytest.mark.parametrize('model_name,scale', [('lmliif', 12), ('lmliif', 6), ('lmlte', 12),
                                              ('lmlte', 6)])
def test_table_maker_writes_the_official_tables(tmp_path, model_name, scale):
    from scripts import make_cmsr_table
    out = tmp_path / 'table.yaml'
    code = make_cmsr_table.main([
        '--config', f'configs/test/test-set5-{scale}.yaml', '--model',
        lmf(f'tiny_{model_name}.pth'), '--out', str(out), '--data-root', shared_path('data'),
        '--quiet'])
    assert code == 0
    official = os.path.join(LOCAL_REFERENCE, 'lmf_init_cmsr', f'tiny_{model_name}-x{scale}.yaml')
    with open(official) as f:
        expected = yaml.safe_load(f)
    with open(out) as f:
        assert yaml.safe_load(f) == expected


def test_table_maker_keeps_other_scales_and_refuses_other_models(tmp_path, capsys,
                                                                 official_checkpoint):
    from scripts import make_cmsr_table
    out = tmp_path / 'table.yaml'
    out.write_text('30: {1: 0.2, 2: 0.3}\n')
    args = ['--config', 'configs/test/test-set5-12.yaml', '--out', str(out), '--data-root',
            shared_path('data'), '--quiet', '--set', 'test_dataset.dataset.args.first_k=1']
    assert make_cmsr_table.main(args + ['--model', lmf('tiny_lmlte.pth')]) == 0
    tables = load_tables(str(out))
    assert tables[30] == {1: 0.2, 2: 0.3} and set(tables) == {12, 30}
    before = out.read_text()
    capsys.readouterr()
    assert make_cmsr_table.main(args + ['--model', official_checkpoint]) == 2
    assert 'CMSR tables are made for LMF models' in capsys.readouterr().err
    assert out.read_text() == before


# --- through the renderer, and training ---

def normalised_render(model, d, size, **options):
    from conftest import render_normalised
    return render_normalised(model, d['inp'], size, **options)


@pytest.mark.parametrize('name', ['tiny_lmliif_x12', 'tiny_lmlte_x12'])
def test_renderer_bands_tiles_and_chunks_equal_the_official_output(name):
    """The renderer's bands (latent grid in bands of rows, encoder tiles, small chunks) give
    the official output; bf16 stays close."""
    model, d = load_case(name)
    H, W = 96, 96
    full = make_coord((H, W)).view(-1, 2)
    expected = torch.zeros(H * W, 3)
    idx = d['query_index'] if 'query_index' in d else torch.arange(H * W)
    expected[idx] = (d['pred'][0] * 0.5 + 0.5).clamp(0, 1)
    assert torch.equal(full[idx], d['coord'][0])
    for options in ({}, {'band_rows': 3, 'chunk_size': 500}, {'encoder_tile': 5}):
        out = normalised_render(model, d, (H, W), **options).view(H * W, 3)
        assert (out[idx] - expected[idx]).abs().max().item() < VECTOR_TOLERANCE, options
    bf16 = normalised_render(model, d, (H, W), precision='bf16').view(H * W, 3)
    assert (bf16[idx] - expected[idx]).abs().max().item() < 0.03


@pytest.mark.parametrize('model_name', ['lmliif', 'lmlte'])
def test_renderer_with_cmsr_gives_the_official_cmsr_output(model_name):
    name = f'tiny_{model_name}_cmsr_x12'
    model, d = load_case(name)
    table = table_of(f'tiny_{model_name}.pth')
    expected = (d['pred'][0] * 0.5 + 0.5).clamp(0, 1)
    for impl in ('fast', 'reference'):
        for options in ({}, {'chunk_size': 500}):  # bands of 96 rows, of 5
            out = normalised_render(model, d, (96, 96), cmsr=table, impl=impl,
                                    **options).view(-1, 3)
            assert (out - expected).abs().max().item() < VECTOR_TOLERANCE, (impl, options)
        scene = Renderer(model, OFFICIAL_NORM, RenderOptions(cmsr=table, impl=impl)).scene(
            d['inp'] * 0.5 + 0.5)
        flat = scene.decode(d['coord'], d['cell'])[0]
        assert (flat - expected).abs().max().item() < VECTOR_TOLERANCE, impl


@pytest.mark.parametrize('model_name', ['lmliif', 'lmlte'])
def test_cmsr_in_bands_equals_the_whole_grid_and_never_holds_a_level_whole(model_name,
                                                                           monkeypatch):
    """demo.py's CMSR (models.cmsr.cmsr_bands) against the whole-grid CMSR of test.py (the
    official's, above): an output on the last level's grid, one a little off it (per-axis
    scales: the last level's rows made as the bands' resampling needs them), a table whose
    last level decodes nothing; no coordinate grid beyond a band or the table's scales."""
    from models import cmsr
    model = models.make(load_checkpoint(lmf(f'tiny_{model_name}.pth'))['model'],
                        load_sd=True).eval()
    inp = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grids = []
    for name in ('level_grid', 'grid_of', 'band_coords'):
        made = getattr(cmsr, name)
        monkeypatch.setattr(cmsr, name, lambda *a, made=made: grids.append(made(*a)) or
                            grids[-1])
    cases = [((240, 288), table_of(f'tiny_{model_name}.pth')),
             ((150, 310), table_of(f'tiny_{model_name}.pth')),
             ((240, 288), {12: {1: 0.1, 2: 0.9}}),
             ((60, 72), table_of(f'tiny_{model_name}.pth'))]  # x3: no CMSR, plain decoding
    with torch.no_grad():
        feat = model.encode(inp)
        for (H, W), tables in cases:
            coord = make_coord((H, W)).unsqueeze(0)
            cell = torch.tensor([2 / H, 2 / W]).expand_as(coord)
            whole = model.cmsr_decoder(feat, tables, 'fast', 4096)(coord, cell)
            grids.clear()
            bands = torch.cat(list(model.cmsr_bands(feat, tables, (H, W), 37, 'fast', 4096)), 1)
            assert (bands - whole).abs().max().item() < 1e-5, (H, W)
            largest = max((g.shape[1] for g in grids), default=0)
            assert largest <= max(37 * W, 20 * 24 * 8 ** 2), (H, W, largest)


def test_cmsr_refuses_compile_and_window():
    for options in ({'compile': True}, {'window': 8}):
        with pytest.raises(ValueError, match='does not run with compile or with window'):
            RenderOptions(cmsr={12: {1: 0.1}}, **options)


@pytest.mark.parametrize('name', ['tiny_lmliif_train', 'tiny_lmlte_train'])
def test_fast_path_trains_with_the_reference_gradients(name):
    model, d = load_case(name)
    model.train()
    assert_fast_path_has_reference_gradients(model, d)
    assert all(p.grad is not None for p in model.hypernet.parameters())


def test_queries_of_one_image_with_different_cells_are_refused():
    model, d = load_case('tiny_lmliif')
    cell = d['cell'].clone()
    cell[:, 5] *= 2
    for impl in ('reference', 'fast'):
        with pytest.raises(ValueError, match='all queries of an image must have the same cell'):
            model(d['inp'], d['coord'], cell, impl=impl)


def test_fast_decoder_remakes_its_tables_for_a_new_cell():
    model, d = load_case('tiny_lmlte')
    with torch.no_grad():
        feat = model.encode(d['inp'])
        decode = model.decoder(feat, 'fast')
        for factor in (1.0, 3.0, 1.0):
            cell = d['cell'] * factor
            expected = model.query(feat, d['coord'], cell)
            assert (decode(d['coord'], cell) - expected).abs().max().item() < 2e-5, factor


@pytest.mark.parametrize('args,message', [
    ({'use_conv': True}, 'use_conv=True'),
    ({'hidden_depth': 0}, 'hidden_depth >= 1'),
])
def test_bad_lmmlp_args_are_refused(args, message):
    spec = {'in_dim': 4, 'out_dim': 3, 'hidden_dim': 16, 'hidden_depth': 2, **args}
    with pytest.raises(ValueError, match=message):
        models.make({'name': 'lmmlp', 'args': spec})


def test_official_table_maker_mode_is_pointed_to_the_script():
    spec = load_checkpoint(lmf('tiny_lmliif.pth'))['model']
    spec = dict(spec, args=dict(spec['args'], cmsr_spec={
        'mse_threshold': 2e-5, 's2m_tables': {12: {1: 1}}, 'updating_scale': 12}))
    with pytest.raises(ValueError, match='scripts/make_cmsr_table.py'):
        models.make(spec)


@pytest.mark.parametrize('name', ['tiny_lmliif', 'tiny_lmlte'])
def test_viewer_tiles_are_the_demo_render(name):
    """The viewer's tiles of an LMF model (each decoded on its own, modulations made per view
    scale) are the pixels of the whole render at that scale."""
    from conftest import render_normalised
    from webviewer.tiles import Pane, tile_pixels
    model, d = load_case(name)
    image = d['inp'] * 0.5 + 0.5
    pane = Pane(name, Renderer(model, OFFICIAL_NORM), image)
    for scale in (2.5, 6.0):
        H, W = round(24 * scale), round(20 * scale)
        whole = render_normalised(model, d['inp'], (H, W))
        expected = (whole.numpy() * 255).round().astype(np.uint8)
        tile = tile_pixels(pane, scale, 0, 0)
        assert tile.shape == expected.shape
        assert np.abs(tile.astype(int) - expected).max() <= 1
