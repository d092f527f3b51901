"""The one renderer: the plan's queries per call per device and path, data_norm from the
checkpoint, torch.compile, all against the official outputs."""
import numpy as np
import pytest
import torch
from PIL import Image

import demo
from inference import RenderOptions, Renderer, load_decoder_and_norm
from inference.compile import CompiledDecoder
from inference.plan import CALL_SHARE, CPU_REFERENCE_CHUNK, GPU_MAX_CHUNK, queries_per_call
from utils import make_coord
from utils.normalization import IDENTITY_NORM, OFFICIAL_NORM, norm_of_checkpoint
from models.liif import FAST_CHUNK_SIZE
from test_models import VECTOR_TOLERANCE, checkpoint_of, load_case
from utils import load_checkpoint

CPU, CUDA = torch.device('cpu'), torch.device('cuda')


def official_image(pred: torch.Tensor) -> torch.Tensor:
    """The official output (normalised) as the renderer gives it: de-normalised, clamped."""
    return (pred * 0.5 + 0.5).clamp(0, 1)


def test_cpu_chunks_are_cache_sized_for_the_fast_path_and_official_for_the_reference():
    liif, _ = load_case('tiny_liif')
    metasr, _ = load_case('tiny_metasr')

    def chunk(model, impl):
        return queries_per_call(model, RenderOptions(impl=impl), CPU, 1 << 30, None)
    assert chunk(liif, 'fast') == FAST_CHUNK_SIZE == 4096
    assert chunk(liif, 'reference') == CPU_REFERENCE_CHUNK == 30000
    assert chunk(metasr, 'fast') == CPU_REFERENCE_CHUNK  # no fast path of its own


def test_a_call_takes_at_most_its_share_of_the_budget_on_any_device():
    liif, _ = load_case('tiny_liif')
    opts = RenderOptions()
    # A simulated GPU: 3000 bytes per query; a quarter of the budget for one call.
    assert queries_per_call(liif, opts, CUDA, 1 << 30, 3000) == (1 << 30) // CALL_SHARE // 3000
    assert queries_per_call(liif, opts, CUDA, 1 << 40, 3000) == GPU_MAX_CHUNK
    assert queries_per_call(liif, opts, CUDA, 1 << 20, 10 ** 9) == 1
    # On a CPU the cache-sized chunk, unless a small budget holds fewer queries per call.
    assert queries_per_call(liif, opts, CPU, 1 << 30, 3000) == 4096
    assert queries_per_call(liif, opts, CPU, 4 << 20, 3000) == (4 << 20) // CALL_SHARE // 3000
    capped = RenderOptions(chunk_size=1000)
    assert queries_per_call(liif, capped, CPU, 1 << 30, 3000) == 1000
    assert queries_per_call(liif, capped, CUDA, 1 << 30, 3000) == 1000


def test_the_plans_queries_per_call_are_what_the_decoder_runs(monkeypatch):
    """Renders under a small budget: the plan's chunk is below the CPU's 4096, and the
    model's decoder gets calls of that many queries (the last one fewer) in a scene, and of
    at most that many in the plan's bands of output rows."""
    liif, _ = load_case('tiny_liif')
    renderer = Renderer(liif, OFFICIAL_NORM, RenderOptions(max_memory=3 << 20))
    image = torch.rand(1, 3, 40, 48)
    calls = []
    decoder = liif.decoder

    def counting(feat, impl='reference'):
        decode = decoder(feat, impl)
        return lambda coord, cell: calls.append(coord.shape[1]) or decode(coord, cell)
    monkeypatch.setattr(liif, 'decoder', counting)
    plan = renderer.plan((40, 48), CPU)
    assert plan.chunk_size < 4096
    calls.clear()  # the plan's probe
    coord = make_coord((160, 192)).unsqueeze(0)
    renderer.scene(image, plan).decode(coord, torch.full_like(coord, 2 / 160))
    assert set(calls[:-1]) == {plan.chunk_size} and calls[-1] <= plan.chunk_size
    plan = renderer.plan((40, 48), CPU, (160, 192))
    calls.clear()
    bands = [band.shape[0] for _, band in renderer.bands(image, (160, 192), plan)]
    assert sum(bands) == 160 and max(bands) == plan.output_rows
    assert max(calls) == min(plan.chunk_size, plan.output_rows * 192)


def test_whole_grid_models_take_only_the_protocols_chunks():
    srno, _ = load_case_platform('tiny_srno')
    assert queries_per_call(srno, RenderOptions(), CPU, 1 << 30, 3000) is None
    assert queries_per_call(srno, RenderOptions(chunk_size=77), CPU, 1 << 30, 3000) == 77
    assert Renderer(srno, OFFICIAL_NORM).plan((8, 8), CPU).chunk_size is None


def load_case_platform(case: str):
    from test_platform import load_case as load
    return load(case)


@pytest.mark.parametrize('impl', ['fast', 'reference'])
def test_scene_decodes_the_official_outputs(impl):
    model, d = load_case('official_x4')
    scene = Renderer(model, OFFICIAL_NORM, RenderOptions(impl=impl)).scene(d['inp'] * 0.5 + 0.5)
    got = scene.decode(d['coord'], d['cell'])
    assert (got - official_image(d['pred'])).abs().max().item() < VECTOR_TOLERANCE


def test_identity_data_norm_feeds_the_image_as_it_is():
    # The vectors' inputs are normalised images; with identity data_norm they are fed as they
    # are, and the output is the raw model output (clamped).
    model, d = load_case('tiny_liif')
    scene = Renderer(model, IDENTITY_NORM).scene(d['inp'])
    got = scene.decode(d['coord'], d['cell'])
    assert (got - d['pred'].clamp(0, 1)).abs().max().item() < VECTOR_TOLERANCE


def test_compiled_decoder_equals_the_official_outputs_with_padded_chunks():
    model, d = load_case('tiny_liif')
    renderer = Renderer(model, OFFICIAL_NORM, RenderOptions(chunk_size=96, compile=True))
    scene = renderer.scene(d['inp'] * 0.5 + 0.5)
    n = d['coord'].shape[1]
    assert n % 96  # the last chunk is padded
    got = scene.decode(d['coord'], d['cell'])
    assert isinstance(scene.decode_fn, CompiledDecoder)
    assert scene.decode_fn.compiled is not None, 'torch.compile fell back on this machine'
    assert scene.decode_fn.compile_seconds is not None
    assert (got - official_image(d['pred'])).abs().max().item() < VECTOR_TOLERANCE


def test_compile_failure_falls_back_with_a_warning(caplog):
    calls = []

    def decode(coord, cell):
        calls.append(coord.shape[1])
        return coord.new_zeros(coord.shape[0], coord.shape[1], 3)

    wrapped = CompiledDecoder(decode, 12)
    wrapped.compiled = lambda *a: (_ for _ in ()).throw(RuntimeError('no compiler here'))
    out = wrapped(torch.zeros(1, 5, 2), torch.zeros(1, 5, 2))  # padded to 8, a power of two
    assert out.shape == (1, 5, 3) and calls == [8]
    assert wrapped(torch.zeros(1, 11, 2), None).shape == (1, 11, 3) and calls[-1] == 12
    assert 'torch.compile failed (RuntimeError: no compiler here)' in caplog.text
    assert wrapped.compiled is None


def test_norm_of_checkpoint_from_the_key_the_run_config_or_the_official_default(tmp_path):
    ckpt = load_checkpoint(checkpoint_of('tiny_liif'))
    assert norm_of_checkpoint(str(tmp_path / 'a.pth'), ckpt) == OFFICIAL_NORM
    config = tmp_path / 'config.yaml'
    config.write_text(f"model: {{name: {ckpt['model']['name']}}}\n")
    assert norm_of_checkpoint(str(tmp_path / 'a.pth'), ckpt) == IDENTITY_NORM
    config.write_text(f"model: {{name: {ckpt['model']['name']}}}\n"
                      "data_norm: {inp: {sub: [0.2], div: [0.7]}, gt: {sub: [0.1], div: [2]}}\n")
    assert norm_of_checkpoint(str(tmp_path / 'a.pth'), ckpt)['inp'] == {'sub': [0.2],
                                                                       'div': [0.7]}
    ckpt['data_norm'] = IDENTITY_NORM
    assert norm_of_checkpoint(str(tmp_path / 'a.pth'), ckpt) == IDENTITY_NORM
    ckpt['data_norm'] = {'inp': {'sub': [0.5], 'div': [0]}, 'gt': OFFICIAL_NORM['gt']}
    with pytest.raises(ValueError, match='data_norm.inp.div'):
        norm_of_checkpoint(str(tmp_path / 'a.pth'), ckpt)


def test_demo_renders_with_the_checkpoints_data_norm(tmp_path):
    """A model trained on [0, 1] (identity data_norm, saved in its checkpoint) is fed and read
    on [0, 1]: the demo's output is the raw model output, not shifted by the official 0.5."""
    ckpt = load_checkpoint(checkpoint_of('tiny_liif'))
    ckpt['data_norm'] = IDENTITY_NORM
    path = tmp_path / 'identity.pth'
    torch.save(ckpt, path)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'in.png')
    assert demo.main(['--input', str(tmp_path / 'in.png'), '--output', str(tmp_path / 'out.png'),
                      '--model', str(path), '--resolution', '20,23', '--quiet']) == 0
    model, norm = load_decoder_and_norm(str(path), CPU)
    assert norm == IDENTITY_NORM
    from utils import make_coord
    coord = make_coord((20, 23)).unsqueeze(0)
    cell = torch.tensor([2 / 20, 2 / 23]).expand(1, 20 * 23, 2)
    with torch.no_grad():
        inp = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        expected = model.query(model.encode(inp), coord, cell).clamp(0, 1).view(20, 23, 3)
    got = np.asarray(Image.open(tmp_path / 'out.png')).astype(np.float32) / 255
    assert np.abs(got - expected.numpy()).max() <= 0.5 / 255 + 1e-6
