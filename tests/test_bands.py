"""Band-wise encoding (inference.bands) and memory plans (inference.plan) against the
whole-image run."""
import pytest
import torch

import models
from conftest import render_normalised, shared_path
from inference.bands import needed_rows, sub_grid_queries
from inference import RenderOptions
from inference.costs import Costs, measure_costs, peak_bytes
from inference.plan import fit, make_plan
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


def band_queries(H, W, a, b, h):
    """The output rows of an H x W grid whose queries read only latent rows [a, b) of h."""
    coord = make_coord((H, W)).unsqueeze(0)
    rows = [r for r in range(H) if needed_rows(coord[:, r * W:(r + 1) * W], h, 3)[0] >= a
            and needed_rows(coord[:, r * W:(r + 1) * W], h, 3)[1] <= b]
    coord = coord.view(1, H, W, 2)[:, rows].reshape(1, -1, 2)
    return coord, torch.tensor([2 / H, 2 / W]).expand_as(coord)


def test_fast_paths_decode_a_band_of_features_bit_for_bit_as_the_whole_grid():
    """LIIF's and LTE's fast paths take a band of the latent grid in the whole image's frame
    (`decoder(feat, 'fast', rows=(a, h))`): given the whole grid's features for rows [a, b),
    a band's queries decode exactly as from the whole grid, not only within float rounding.
    (Features made from a band's own codes can differ in the last bit where the convolution
    library picks another kernel for the smaller shape.)"""
    from models.liif import ProjectedFeat
    from models.ensemble import make_lookup
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 31, 19) * 2 - 1
    h, a, b = 31, 9, 20
    coord, cell = band_queries(97, 45, a, b, h)
    assert coord.shape[1] > 0
    liif = load('pretrained', 'edsr-baseline-liif.pth')
    lte = load('reference', 'platform', 'tiny_lte.pth')
    with torch.no_grad():
        proj = liif.project(liif.encode(inp))
        band = ProjectedFeat(proj.rows.view(1, h, 19, -1)[:, a:b].reshape(1, -1, proj.rows.shape[-1]),
                             make_lookup(h, 19, a, b - a), None)
        assert torch.equal(liif.query_projected(band, coord, cell),
                           liif.query_projected(proj, coord, cell))
        feat = lte.encode(inp)
        sliced = type(feat)(feat.coef[..., a:b, :], feat.freq[..., a:b, :], feat.inp)
        assert torch.equal(lte.decoder(sliced, 'fast', rows=(a, h))(coord, cell),
                           lte.decoder(feat, 'fast')(coord, cell))
    with pytest.raises(ValueError, match='decodes bands in their own frame'):
        lte.decoder(sliced, 'reference', rows=(a, h))


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
    costs = Costs(encoder_per_pixel=1024, code=256, feature_per_code=3072, per_query=4096,
                  weights=6 << 20)
    cpu, opts = torch.device('cpu'), RenderOptions()

    def plan(size, budget, output=None, held=0, strict=True):
        return fit(model, size, output, opts, cpu, costs, budget, held, strict)
    small = plan((64, 64), 1 << 30, (256, 256))
    assert small.encoder_tile is None and small.band_rows is None and small.chunk_size == 4096
    for budget in (1 << 30, 2 << 30):  # the normalised input alone is 382 MB
        tiled = plan((3456, 4608), budget, (6912, 9216), held=100 << 20)
        assert tiled.encoder_tile is not None and tiled.band_rows is not None
        assert tiled.estimate <= budget and tiled.output_rows >= 1
    grid = plan((1000, 1000), 4 << 30)
    assert grid.band_rows is None and grid.estimate <= 4 << 30 and grid.output_rows == 0
    with pytest.raises(ValueError, match=r"a memory budget of 1\.0 MB is too small for this "
                                         r"model on a 4608x3456 input: it needs at least"):
        plan((3456, 4608), 1 << 20, (6912, 9216))
    # A default budget (not strict) takes the smallest tiles rather than refusing.
    assert plan((3456, 4608), 1 << 20, (6912, 9216), strict=False).encoder_tile == (16, 16)


def test_what_the_caller_holds_counts_in_the_budget():
    """The same image and budget: the more the caller holds (its decoded image, an output
    encoded from memory), the smaller the tiles; small images under a large budget skip the
    probe."""
    model = load('pretrained', 'edsr-baseline-liif.pth')
    costs = Costs(1024, 256, 2304, 4096, 6 << 20)
    opts = RenderOptions(max_memory=600 << 20)

    def area(held):
        plan = make_plan(model, (1728, 2304), torch.device('cpu'), opts, lambda: costs,
                         (3456, 4608), held)
        assert plan.estimate <= 600 << 20
        return plan.encoder_tile[0] * plan.encoder_tile[1]
    assert area(150 << 20) < area(0)
    probed = []
    make_plan(model, (16, 16), torch.device('cpu'), RenderOptions(max_memory=8 << 30),
              lambda: probed.append(1) or costs, (64, 64), 0)
    assert not probed


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
