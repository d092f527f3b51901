"""The benchmark scripts run end to end on tiny sizes (their numbers are measured elsewhere)."""
import os

import numpy as np
from PIL import Image

from conftest import REPO
from scripts import bench_inference, bench_png, bench_train
from test_models import checkpoint_of


def test_bench_png_writes_files_that_read_back_identical(capsys):
    assert bench_png.main(['--size', '96x40', '--repeats', '1']) == 0
    assert 'both read back identical' in capsys.readouterr().out


def test_bench_inference_shows_the_chunk_policy_and_every_path(capfd):
    assert bench_inference.main(['--model', checkpoint_of('tiny_liif'), '--size', '8',
                                 '--scales', '2', '--repeats', '1', '--precision', 'fp32',
                                 'bf16', '--device', 'cpu']) == 0
    out, err = capfd.readouterr()
    assert 'profiler_st' not in out + err  # the profiler's C++ start/stop lines, silenced
    rows = [line for line in out.splitlines() if '(LIIF) |' in line]
    assert [row.split(' | ')[3] for row in rows] == ['reference fp32', 'fast fp32', 'fast bf16']
    assert [row.split(' | ')[5] for row in rows] == ['30000', '4096', '4096']


def test_bench_train_times_the_step_and_the_loader(capsys, tmp_path):
    config = os.path.join(REPO, 'configs', 'train-t91', 'train_t91_small-liif.yaml')
    folder = tmp_path / 'train' / 'T91'
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((140, 140, 3), 40 * i, np.uint8)).save(folder / f'{i}.png')
    assert bench_train.main(['--config', config, '--device', 'cpu', '--steps', '1', '--warmup',
                             '0', '--loader', '2', '--data-root', str(tmp_path),
                             '--set', 'train_dataset.batch_size=2']) == 0
    out = capsys.readouterr().out
    assert 'iterations/s:' in out and 'samples/s' in out
    # 34 epochs of 4 images x repeat 40 in batches of 2.
    assert 'projected recipe: 2720 iterations (34 epochs)' in out


def test_bench_train_projects_an_official_recipe_and_compiles(capsys):
    config = os.path.join(REPO, 'configs', 'train-div2k', 'train_edsr-baseline-liif.yaml')
    assert bench_train.main(['--config', config, '--device', 'cpu', '--steps', '1', '--warmup',
                             '0', '--amp', '--compile', 'on', '--set',
                             'train_dataset.batch_size=1', 'train_dataset.wrapper.args.sample_q=64',
                             'model.args.encoder_spec.args.n_resblocks=1']) == 0
    out = capsys.readouterr().out
    assert "precision='bf16', compile=True" in out and 'compiled in' in out
    # DIV2K (800 images, not on this machine) x repeat 20 in batches of 1, 1000 epochs.
    assert 'projected recipe: 16000000 iterations (1000 epochs)' in out
