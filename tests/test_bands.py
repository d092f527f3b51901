"""Band-wise encoding (inference.bands) and memory plans (inference.memory) against the
whole-image run."""
import pytest
import torch

import models
from conftest import render_normalised, shared_path
from inference.bands import needed_rows, sub_grid_queries
from inference.memory import Costs, measure_costs, peak_bytes, plan_memory
from inference.tiling import encode_tiled, tiling_geometry
from utils import load_checkpoint, make_coord

BAND_TOLERANCE = 1e-5


def load(*parts):
    return models.make(load_checkpoint(shared_path(*parts))['model'], load_sd=True).eval()


def render(model, inp, size, **kwargs):
    return render_normalised(model, inp, size, chunk_size=700, **kwargs)


TINY = [('reference', 'vectors', 'tiny_liif.pth'), ('reference', 'vectors', 'tiny_metasr.pth'),
        ('reference', 'platform', 'tiny_lte.pth'), ('reference', 'platform', 'tiny_lte_fast.pth')]


# The official checkpoint on its fast path (its reference path is the tiny ones' code).
@pytest.mark.parametrize('checkpoint,impl', [(('pretrained', 'edsr-baseline-liif.pth'), 'fast')]
                         + [(c, impl) for c in TINY for impl in ('fast', 'reference')])
def test_bands_of_latent_rows_give_the_whole_grid_output(checkpoint, impl):
    model = load(*checkpoint)
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 31, 19) * 2 - 1
    # Non-integer scales, the two axes different; bands narrower and wider than a tile.
    for size, tile, band_rows in [((97, 45), (8, 8), 5), ((64, 80), (16, 7), 16)]:
        whole = render(model, inp, size, impl=impl)
        banded = render(model, inp, size, impl=impl, encoder_tile=tile, band_rows=band_rows)
        assert (banded - whole).abs().max().item() < BAND_TOLERANCE, (size, tile)


def test_bicubic_and_srno_keep_their_output_with_bands():
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 20, 17) * 2 - 1
    bicubic = models.make({'name': 'bicubic'})
    assert (render(bicubic, inp, (50, 40), band_rows=4) -
            render(bicubic, inp, (50, 40))).abs().max().item() < BAND_TOLERANCE
    srno = load('reference', 'platform', 'tiny_srno.pth')  # whole grid: bands do not apply
    assert (render(srno, inp, (50, 40), encoder_tile=8, band_rows=8) -
            render(srno, inp, (50, 40))).abs().max().item() < 1e-4


def test_sub_grid_queries_keep_code_centres_and_cells():
    h, a, b = 40, 7, 19
    coord = make_coord((h,)).view(1, h, 1).expand(1, h, 2).contiguous()
    cell = torch.full((1, h, 2), 2 / h)
    sub, sub_cell = sub_grid_queries(coord[:, a:b], cell[:, a:b], h, a, b)
    assert torch.allclose(sub[0, :, 0], make_coord((b - a,))[:, 0], atol=1e-6)
    assert torch.equal(sub[..., 1], coord[:, a:b, 1])
    assert torch.allclose(sub_cell[..., 0], torch.full((1, b - a), 2 / (b - a)))
    # A query between the centres of rows 9 and 10 reads rows 9 - reach .. 10 + reach.
    assert needed_rows(coord[:, 9:11].mean(dim=1, keepdim=True), h, 3) == (6, 14)


def test_swinir_tiles_are_aligned_to_windows_and_close_to_whole():
    model = load('reference', 'platform', 'tiny_swinir_lte.pth')
    window = model.encoder.window_size
    assert tiling_geometry(model.encoder) == (32, window)
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 6 * window, 5 * window) * 2 - 1
    with torch.no_grad():
        whole = model.encoder(inp)
    tiled = encode_tiled(model.encoder, inp, 2 * window, halo=window)
    # Not exact (shifted windows reach beyond any halo), but close for a halo of a window.
    assert 0 < (tiled - whole).abs().max().item() < 0.05 * whole.abs().max().item()
    assert (encode_tiled(model.encoder, inp, 2 * window) - whole).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match=f"multiple of {window}"):
        encode_tiled(model.encoder, inp, window + 1)
    with pytest.raises(ValueError, match="pad the input first"):
        encode_tiled(model.encoder, inp[..., 1:, :], window)


def test_peak_bytes_counts_what_is_alive_together():
    def step():
        a = torch.empty(1 << 18)         # 1 MiB
        b = torch.empty(1 << 19)         # 2 MiB, with a alive: 3 MiB
        del a, b
        c = torch.empty(1 << 18)         # 1 MiB
        return c.view(-1, 2)             # a view is not another allocation
    assert peak_bytes(step) == 3 << 20


def test_measured_costs_match_the_architecture():
    model = load('pretrained', 'edsr-baseline-liif.pth')
    costs = measure_costs(model, 'fast')
    assert costs.code == 64 * 4                       # 64 float32 channels per code
    assert costs.encoder_per_pixel >= 2 * 64 * 4      # a residual block holds two maps
    assert costs.feature_per_code >= 256 * 4          # the fast path's 256-wide projections
    assert costs.per_query > 256 * 4                  # at least one hidden layer per query


def test_plans_fit_their_budget_and_keep_small_images_whole():
    model = load('pretrained', 'edsr-baseline-liif.pth')
    costs = Costs(encoder_per_pixel=1024, code=256, feature_per_code=3072, per_query=4096)
    small = plan_memory(model, (64, 64), 1 << 30, 65536, costs)
    assert small.encoder_tile is None and small.band_rows is None
    for budget in (500 << 20, 1 << 30):
        plan = plan_memory(model, (3456, 4608), budget, 65536, costs)
        assert plan.encoder_tile is not None and plan.band_rows is not None
        assert plan.estimate <= budget
    grid = plan_memory(model, (1000, 1000), 4 << 30, 65536, costs, bands=False)
    assert grid.band_rows is None and grid.estimate <= 4 << 30
    with pytest.raises(ValueError, match=r"a memory budget of 1\.0 MB is too small for this "
                                         r"model on a 3456x4608 input: it needs at least"):
        plan_memory(model, (3456, 4608), 1 << 20, 65536, costs)


def test_bands_under_bf16_keep_the_encoder_in_float32():
    """demo.py --precision bf16 autocasts the decoding only: the band path encodes its blocks
    in float32 as the whole-image path does, so the two differ by bf16 rounding of the
    decoder alone: 1.1e-3 here, 9.6e-3 with the blocks encoded under autocast."""
    model = load('pretrained', 'edsr-baseline-liif.pth')
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 40, 24) * 2 - 1
    whole = render(model, inp, (90, 50), precision='bf16')
    banded = render(model, inp, (90, 50), precision='bf16', encoder_tile=(16, 16),
                    band_rows=16)
    assert (banded - whole).abs().max().item() < 2e-3
