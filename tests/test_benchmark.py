"""scripts/benchmark.py against the official numbers (../shared/reference: psnr.tsv, the official
test.py's; metrics/metrics.tsv, BasicSR's functions on the official outputs), its cache, and the
efficiency counts against the multiply-adds written out from the architecture."""
import csv
import os

import pytest
import torch

from conftest import shared_path
from inference import Renderer, load_decoder
from inference.efficiency import measure_efficiency
from scripts import benchmark
from utils.normalization import OFFICIAL_NORM


def official_psnr():
    """{(set, scale): PSNR} of the official test.py (psnr.tsv)."""
    with open(shared_path('reference', 'psnr.tsv')) as f:
        return {(r['set'], int(r['scale'])): float(r['psnr'])
                for r in csv.DictReader(f, delimiter='\t')}


def basicsr_means():
    """{(set, scale, protocol): mean} of metrics.tsv."""
    with open(shared_path('reference', 'metrics', 'metrics.tsv')) as f:
        return {(r['set'], int(r['scale']), r['protocol']): float(r['value'])
                for r in csv.DictReader(f, delimiter='\t') if r['image'] == 'MEAN'}


def table_cells(out_dir):
    """{(set, scale, metric): mean} of results.csv."""
    with open(os.path.join(out_dir, 'results.csv')) as f:
        return {(r['set'], int(r['scale']), r['metric']): float(r['mean'])
                for r in csv.DictReader(f) if r['set'] != 'efficiency'}


@pytest.fixture
def data_root():
    return os.path.dirname(shared_path('data', 'benchmark', 'Set5'))[:-len('/benchmark')]


def test_benchmark_prints_the_official_numbers_and_resumes_from_its_cache(
        tmp_path, capsys, monkeypatch, data_root, official_checkpoint):
    args = ['--model', official_checkpoint, '--sets', 'set5', '--scales', '4', '12',
            '--data-root', data_root, '--out', str(tmp_path), '--no-efficiency', '--quiet']
    assert benchmark.main(args) == 0
    printed = capsys.readouterr().out
    assert '| set5 | edsr-baseline-liif | ' in printed and 'protocol liif' in printed
    cells, psnr, ref = table_cells(tmp_path), official_psnr(), basicsr_means()
    for scale in (4, 12):
        assert abs(cells['set5', scale, 'psnr'] - psnr['Set5', scale]) < 5e-5
        # LIIF's protocol scores SSIM as BasicSR's calculate_ssim_pt on the float output, Y.
        assert abs(cells['set5', scale, 'ssim'] - ref['Set5', scale, 'bsr_ssim_y_pt']) < 1e-5

    # An interrupted run: two images missing, the last row torn. Only those two are scored.
    cache = next(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'cache') for f in fs
                 if f == 'set5-x4.csv')
    with open(cache) as f:
        lines = f.readlines()
    with open(cache, 'w') as f:
        f.writelines(lines[:-2] + ['woman,32.1'])
    scored = []
    real_evaluate = benchmark.evaluate
    monkeypatch.setattr(benchmark, 'evaluate', lambda *a, **k: real_evaluate(
        *a, **{**k, 'on_image': lambda name, s: (scored.append(name), k['on_image'](name, s))}))
    assert benchmark.main(args) == 0
    assert sorted(scored) == sorted(line.split(',')[0] for line in lines[-2:])
    assert table_cells(tmp_path) == cells

    # Everything cached: no model is even loaded.
    monkeypatch.setattr(benchmark, 'load_decoder_and_norm', lambda *a: pytest.fail('loaded'))
    assert benchmark.main(args) == 0
    assert table_cells(tmp_path) == cells


def test_benchmark_basicsr_protocol_gives_basicsrs_means(tmp_path, data_root,
                                                           official_checkpoint):
    assert benchmark.main(['--model', official_checkpoint, '--sets', 'set5', '--scales', '3',
                           '--protocol', 'basicsr', '--y-channel', '--data-root', data_root,
                           '--out', str(tmp_path), '--no-efficiency', '--quiet']) == 0
    cells, ref = table_cells(tmp_path), basicsr_means()
    assert abs(cells['set5', 3, 'psnr'] - ref['Set5', 3, 'bsr_psnr_y_u8']) < 1e-4
    assert abs(cells['set5', 3, 'ssim'] - ref['Set5', 3, 'bsr_ssim_y_u8']) < 1e-5
    with open(tmp_path / 'results.md') as f:
        assert "BasicSR's calculate_psnr / calculate_ssim" in f.read()


def test_counted_multiply_adds_equal_liifs_architecture(official_checkpoint):
    """EDSR-baseline (3x3 convolutions: 3->64, then 33 of 64->64) on every input pixel, and
    per output pixel 4 (the local ensemble) runs of the MLP 580-256-256-256-256-3."""
    model = load_decoder(official_checkpoint, torch.device('cpu'))
    h, w, scale = 12, 20, 4
    e = measure_efficiency(Renderer(model, OFFICIAL_NORM).with_options(impl='reference'),
                           torch.device('cpu'), repeats=1, size=(h, w), scale=scale)
    encoder = 9 * (3 * 64 + 33 * 64 * 64) * h * w
    mlp = 4 * (580 * 256 + 3 * 256 * 256 + 256 * 3)
    assert e.macs_per_pixel == pytest.approx(mlp + encoder / (h * w * scale ** 2), rel=1e-9)
    assert e.params == 1567323 and e.seconds > 0 and e.peak_mb > 0


def test_efficiency_table_of_a_model_spec(tmp_path, capsys):
    spec = tmp_path / 'tiny.yaml'
    spec.write_text('name: liif\nargs:\n  encoder_spec: {name: edsr-baseline, args: '
                    '{n_resblocks: 1, n_feats: 8, no_upsampling: true}}\n'
                    '  imnet_spec: {name: mlp, args: {out_dim: 3, hidden_list: [16]}}\n')
    assert benchmark.main(['--model', str(spec), '--no-scores', '--repeats', '1',
                           '--out', str(tmp_path), '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert '320x180 input -> x4 (1280x720)' in out
    assert [line for line in out.splitlines() if line.startswith('| tiny |')]
    # Its scores would mean nothing: refused, one line.
    assert benchmark.main(['--model', str(spec), '--out', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith('error: ')
