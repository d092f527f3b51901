"""Models against the official code: reference outputs, state-dict layouts, registry errors."""

import numpy as np
import pytest
import torch

import models
from conftest import load_json, shared_params, shared_path, vector_device
from models.decoder import decode_in_chunks
from utils import load_checkpoint

VECTOR_TOLERANCE = 1e-5


def vector_cases():
    return [case['name'] for case in load_json(shared_path('reference', 'vectors', 'index.json'))]


def checkpoint_of(case: str) -> str:
    if case.startswith('official_'):
        return shared_path('pretrained', 'edsr-baseline-liif.pth')
    stem = 'tiny_liif' if case == 'tiny_liif_x12' else case
    return shared_path('reference', 'vectors', f'{stem}.pth')


def load_case(case: str):
    data = np.load(shared_path('reference', 'vectors', f'{case}.npz'))
    model = models.make(load_checkpoint(checkpoint_of(case))['model'], load_sd=True).eval()
    device = vector_device()
    return model.to(device), {k: torch.from_numpy(data[k]).to(device) for k in data.files}


def layouts():
    return sorted(load_json(shared_path('reference', 'official_layouts.json')).items())


def test_every_reference_case_is_tested():
    # The parametrised test below would silently shrink if index.json could not be read.
    assert len(vector_cases()) >= 11


@pytest.mark.parametrize('case', shared_params(vector_cases))
def test_outputs_match_official_reference_vectors(case):
    model, d = load_case(case)
    with torch.no_grad():
        pred = model(d['inp'], d['coord'], d['cell'])
    assert pred.shape == d['pred'].shape
    assert (pred - d['pred']).abs().max().item() < VECTOR_TOLERANCE


@pytest.mark.parametrize('case', ['official_anisotropic', 'tiny_metasr', 'tiny_liif_no_imnet'])
def test_official_two_step_api_and_chunked_query_match_forward(case):
    model, d = load_case(case)
    with torch.no_grad():
        model.gen_feat(d['inp'])
        two_step = model.query_rgb(d['coord'], d['cell'])
        feat = model.encode(d['inp'])
        chunked = decode_in_chunks(model.decoder(feat, 'reference'), d['coord'], d['cell'], 777)
    assert (two_step - d['pred']).abs().max().item() < VECTOR_TOLERANCE
    assert (chunked - d['pred']).abs().max().item() < VECTOR_TOLERANCE


def assert_builds_layout(layout, spec=None, ordered=False):
    """The spec of an official layout (or `spec`) builds exactly its keys (in its order, if
    `ordered`), shapes and parameter count; returns the model (on the meta device)."""
    with torch.device('meta'):
        model = models.make(spec or layout['model_spec'])
    sd = model.state_dict()
    if ordered:
        assert list(sd) == list(layout['state_dict'])
    assert {k: list(v.shape) for k, v in sd.items()} == layout['state_dict']
    if 'num_params' in layout:
        assert sum(p.numel() for p in model.parameters()) == layout['num_params']
    return model


@pytest.mark.parametrize('config_name,layout', shared_params(layouts, 2))
def test_official_configs_build_official_state_dict_layouts(config_name, layout):
    assert_builds_layout(layout)


def test_every_official_training_config_layout_is_checked():
    assert len(layouts()) == 17


def test_make_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model 'edsr_baseline'; known: "
                                         r"LocalImplicitSREDSR, LocalImplicitSRRDN, "
                                         r"LocalImplicitSRSWINIR, bicubic, ciaosr, clit, "
                                         r"edsr, edsr-baseline, galerkin, liif, lmliif, lmlte, "
                                         r"lmmlp, lte, lte-fast, metasr, mlp, posenc, rdn, "
                                         r"sronet, swinir$"):
        models.make({'name': 'edsr_baseline', 'args': {}})


def test_make_does_not_mutate_the_spec_and_merges_args():
    spec = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [8]}}
    model = models.make(spec, args={'in_dim': 5})
    assert spec == {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [8]}}
    assert model.layers[0].in_features == 5


def test_register_duplicate_name_raises():
    with pytest.raises(ValueError, match="model 'liif' is already registered"):
        models.register('liif')(object)


def test_make_bad_argument_names_the_model():
    with pytest.raises(ValueError, match="bad args for model 'edsr-baseline'.*n_blocks"):
        models.make({'name': 'edsr-baseline', 'args': {'n_blocks': 4}})


def test_load_sd_with_wrong_keys_names_missing_and_unexpected_keys():
    spec = load_checkpoint(checkpoint_of('tiny_liif'))['model']
    sd = dict(spec['sd'])
    sd['encoder.extra.weight'] = sd.pop('encoder.head.0.weight')
    with pytest.raises(ValueError, match=r"missing keys: encoder\.head\.0\.weight(.|\n)*"
                                         r"unexpected keys: encoder\.extra\.weight"):
        models.make({**spec, 'sd': sd}, load_sd=True)


def test_load_sd_with_wrong_shapes_names_the_key():
    spec = load_checkpoint(checkpoint_of('tiny_liif'))['model']
    args = {**spec['args'], 'imnet_spec': {'name': 'mlp',
                                           'args': {'out_dim': 3, 'hidden_list': [16, 32]}}}
    with pytest.raises(ValueError, match=r"shape mismatches: .*imnet\.layers\.0\.weight: checkpoint \(32, 148\) "
                                         r"vs model \(16, 148\)"):
        models.make({**spec, 'args': args}, load_sd=True)


def test_liif_with_cell_decode_needs_cell():
    model, d = load_case('tiny_liif')
    with pytest.raises(ValueError, match='pass cell'):
        model(d['inp'], d['coord'], None)


@pytest.mark.parametrize('name,scale', [('edsr-baseline', 3), ('edsr-baseline', 4), ('rdn', 4)])
def test_fixed_scale_encoders_upsample(name, scale):
    args = {'scale': scale} if name == 'rdn' else {'scale': scale, 'n_resblocks': 1,
                                                   'n_feats': 8}
    model = models.make({'name': name, 'args': args})
    out = model(torch.zeros(1, 3, 5, 7))
    assert out.shape == (1, 3, 5 * scale, 7 * scale)


def test_edsr_rejects_unsupported_scale():
    with pytest.raises(ValueError, match='EDSR upsampling scale 5 is not supported'):
        models.make({'name': 'edsr-baseline', 'args': {'scale': 5}})


def test_bicubic_model_matches_pil_float_bicubic_upsampling():
    from PIL import Image
    rng = np.random.default_rng(0)
    img = rng.random((3, 9, 13)).astype(np.float32)
    H, W = 23, 30   # non-integer, different per axis
    expected = np.stack([np.asarray(Image.fromarray(c, 'F').resize((W, H), Image.BICUBIC))
                         for c in img])
    model = models.make({'name': 'bicubic', 'args': {}})
    from utils import make_coord
    coord = make_coord((H, W)).unsqueeze(0)
    with torch.no_grad():
        out = model(torch.from_numpy(img).unsqueeze(0), coord)
    out = out[0].t().reshape(3, H, W).numpy()
    assert np.abs(out - expected).max() < 1e-5


@pytest.mark.parametrize('path', [('vectors', 'tiny_liif.pth'), ('platform', 'tiny_lte.pth'),
                                  ('lmf', 'tiny_lmliif.pth')])
@pytest.mark.parametrize('impl', ['reference', 'fast'])
def test_decoder_interface_checks_its_inputs_once(path, impl):
    """Zero queries give an empty result; unbatched coordinates, a batch that is not the
    features' and a cell unlike coord are one message naming the expected shape."""
    model = models.make(load_checkpoint(shared_path('reference', *path))['model'],
                        load_sd=True).eval()
    with torch.no_grad():
        decode = model.decoder(model.encode(torch.rand(1, 3, 12, 10)), impl)
        assert decode(torch.zeros(1, 0, 2), torch.zeros(1, 0, 2)).shape == (1, 0, 3)
        for coord, cell, message in [
                (torch.zeros(5, 2), torch.zeros(5, 2), r'coord must be a \(B, Q, 2\)'),
                (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), 'the features are of 1'),
                (torch.zeros(1, 5, 2), torch.zeros(1, 4, 2), 'cell must be a'),
                (torch.zeros(1, 5, 2, dtype=torch.long), None, 'floating-point')]:
            with pytest.raises(ValueError, match=message):
                decode(coord, cell)


@pytest.mark.parametrize('impl', ['reference', 'fast'])
def test_liif_refuses_features_of_the_wrong_width(impl):
    """The fast path would decode them into finite garbage; both paths refuse them."""
    model = models.make(load_checkpoint(shared_path('reference', 'vectors', 'tiny_liif.pth'))[
        'model'], load_sd=True)
    feat = model.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match='latent codes'):
        model.decoder(feat[:, :-1], impl)
