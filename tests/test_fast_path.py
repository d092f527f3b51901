"""The fast query path against the paper-faithful reference path and the official outputs."""
import pytest
import torch

from models.decoder import decode_in_chunks
from conftest import shared_params
from test_models import VECTOR_TOLERANCE, load_case, vector_cases
from utils import autocast

FAST_TOLERANCE = 2e-5


@pytest.mark.parametrize('case', shared_params(vector_cases))
def test_fast_path_matches_reference_path_and_official_outputs(case):
    model, d = load_case(case)
    with torch.no_grad():
        feat = model.encode(d['inp'])
        reference = model.query(feat, d['coord'], d['cell'])
        # Chunks smaller than the fast path's own blocks and larger ones give the same result.
        for chunk in (1000, 10 ** 6):
            fast = decode_in_chunks(model.decoder(feat, 'fast'), d['coord'], d['cell'], chunk)
            assert (fast - reference).abs().max().item() < FAST_TOLERANCE
            assert (fast - d['pred']).abs().max().item() < VECTOR_TOLERANCE


@pytest.mark.parametrize('case,has_fast_path', [
    ('tiny_liif', True), ('tiny_liif_no_unfold', True), ('tiny_liif_no_ensemble', True),
    ('tiny_liif_no_cell', True), ('tiny_liif_no_imnet', False), ('tiny_metasr', False)])
def test_variants_get_the_fast_path_or_fall_back(case, has_fast_path):
    model, _ = load_case(case)
    assert getattr(model, 'supports_fast', False) == has_fast_path


def test_bf16_fast_path_stays_close_to_reference():
    model, d = load_case('official_x4')
    with torch.no_grad():
        feat = model.encode(d['inp'])
        with autocast(torch.device('cpu'), 'bf16'):
            low = decode_in_chunks(model.decoder(feat, 'fast'), d['coord'], d['cell'], 30000)
    assert low.dtype in (torch.float32, torch.bfloat16)
    # bf16 keeps about 3 significant digits; the official output is in [-1, 1].
    assert (low.float() - d['pred']).abs().max().item() < 0.05
    assert (low.float() - d['pred']).abs().mean().item() < 2e-3


def test_unknown_impl_and_precision_are_errors():
    model, d = load_case('tiny_liif')
    with pytest.raises(ValueError, match="unknown impl 'faster'"):
        model.decoder(model.encode(d['inp']), 'faster')
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        autocast(torch.device('cpu'), 'int8')
