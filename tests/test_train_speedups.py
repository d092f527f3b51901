"""The training step's speed-ups (training.step): compiled equals eager, bf16 follows fp32,
a compiler that fails falls back with a message, bad options are named, a run with every
speed-up on resumes exactly and its checkpoint loads in the official LIIF code with equal
outputs."""
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
import training
from conftest import shared_path, vector_device
from utils.normalization import normalisers
from test_train import TINY_MODEL, fixed_batch, tiny, train  # noqa: F401 (tiny: a fixture)
from utils import load_checkpoint
from training import make_optimizer

CPU = torch.device('cpu')
SPEEDUPS = ['--amp', '--compile', 'on', '--fused-optimizer', 'on', '--channels-last', 'on']


def stepped(options, steps=1, fused=False, device=None):
    """A tiny LIIF after `steps` SGD steps on the fixed batch: (losses, state dict on the
    CPU, step). On the LIIF_TEST_DEVICE (cpu unless set) by default; on CUDA the steps must
    not wait for the device (no host-device synchronisation: checked by torch)."""
    device = device or vector_device()
    torch.manual_seed(0)
    model = models.make(TINY_MODEL).to(device)
    optimizer = make_optimizer(model.parameters(), {'name': 'sgd', 'args': {'lr': 0.5}},
                               fused=fused)
    step = training.TrainStep(model, optimizer, normalisers(None, device), options)
    batch = {k: v.to(device) for k, v in fixed_batch().items()}
    losses = []
    for _ in range(steps):
        if device.type == 'cuda' and options.precision != 'fp16':  # the scaler reads its flags
            torch.cuda.set_sync_debug_mode('error')
        try:
            loss = step(batch)
        finally:
            if device.type == 'cuda':
                torch.cuda.set_sync_debug_mode('default')
        losses.append(loss.item())
    return losses, {k: v.cpu() for k, v in model.state_dict().items()}, step


def assert_close_states(a, b, atol):
    for key, value in a.items():
        assert (value - b[key]).abs().max().item() <= atol, key


def test_compiled_and_fused_step_equals_the_plain_step():
    plain_losses, plain, _ = stepped(training.StepOptions(), steps=3)
    graphs = vector_device().type == 'cuda'  # and replayed as CUDA graphs where they exist
    losses, state, step = stepped(training.StepOptions(compile=True, cuda_graphs=graphs,
                                                       channels_last=True), steps=3, fused=True)
    assert step.compiled is not None and step.compile_seconds is not None  # it did compile
    assert np.allclose(losses, plain_losses, rtol=1e-5, atol=0)
    assert_close_states(state, plain, 1e-5)


def test_bf16_step_follows_the_fp32_step():
    plain_losses, plain, _ = stepped(training.StepOptions())
    losses, state, _ = stepped(training.StepOptions(precision='bf16'))
    assert abs(losses[0] - plain_losses[0]) / plain_losses[0] < 1e-2
    moved = {k: state[k] - v for k, v in stepped(training.StepOptions(), steps=0)[1].items()}
    plain_moved = {k: plain[k] - v for k, v in stepped(training.StepOptions(), steps=0)[1].items()}
    a = torch.cat([v.flatten() for v in moved.values()])
    b = torch.cat([v.flatten() for v in plain_moved.values()])
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.99


def test_a_failing_compiler_falls_back_to_the_eager_step_with_a_message(monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError('no C++ compiler found\nlong traceback')
        return run
    monkeypatch.setattr(torch, 'compile', broken_compile)
    plain_losses, plain, _ = stepped(training.StepOptions(), steps=2, device=CPU)
    with caplog.at_level(logging.WARNING):
        losses, state, step = stepped(training.StepOptions(compile=True), steps=2, device=CPU)
    assert step.compiled is None
    assert 'torch.compile of the training step failed (RuntimeError: no C++ compiler found)' \
        in caplog.text
    assert caplog.text.count('failed') == 1  # said once
    assert losses == plain_losses
    assert_close_states(state, plain, 0)


def test_a_partial_batch_runs_eagerly_instead_of_compiling_again():
    _, _, step = stepped(training.StepOptions(compile=True), device=CPU)
    shape = step.compiled_shape
    half = {k: v[:2] for k, v in fixed_batch().items()}
    step(half)
    assert step.compiled is not None and step.compiled_shape == shape


@pytest.mark.parametrize('kwargs,message', [
    (dict(impl='quick'), "unknown impl 'quick'"),
    (dict(precision='fp8'), "unknown precision 'fp8'"),
    (dict(cuda_graphs=True), 'cuda_graphs needs compile'),
])
def test_bad_step_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.StepOptions(**kwargs)


def test_auto_options_by_device_and_what_the_cpu_cannot_do():
    auto = training.resolve_step_options(CPU)
    assert not auto.compile and not auto.channels_last and auto.precision == 'fp32'
    with pytest.raises(ValueError, match="'graphs' \\(CUDA graphs\\) needs a CUDA device"):
        training.resolve_step_options(CPU, compile='graphs')
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        training.resolve_step_options(CPU, compile='fast')
    model = models.make(TINY_MODEL)
    optimizer = make_optimizer(model.parameters(), {'name': 'adam', 'args': {}})
    with pytest.raises(ValueError, match='fp16 .* needs a CUDA device'):
        training.TrainStep(model, optimizer, normalisers(None, CPU),
                           training.StepOptions(precision='fp16'))


@pytest.mark.parametrize('problem,message', [
    (['--amp', '--precision', 'fp16'], '--amp is --precision bf16'),
    (['--compile', 'graphs'], "'graphs' (CUDA graphs) needs a CUDA device"),
    (['--precision', 'fp16'], 'fp16 (with a gradient scaler) needs a CUDA device'),
])
def test_train_liif_names_a_speed_up_this_machine_cannot_run(tmp_path, tiny, capsys, problem,
                                                              message):
    assert train(tmp_path, tiny, '--name', 'x', *problem) == 2
    assert message in capsys.readouterr().err


def read_csv(path):
    with open(path) as f:
        return f.read().splitlines()


@pytest.mark.parametrize('speedups', [[], SPEEDUPS], ids=['plain', 'every-speed-up'])
def test_resume_is_exact_and_keeps_the_loss_log(tmp_path, tiny, speedups):
    assert train(tmp_path, tiny, '--name', 'whole', *speedups) == 0
    assert train(tmp_path, tiny, '--name', 'split', '--set', 'epoch_max=1', *speedups) == 0
    # A run stopped after logging epoch 2's losses but before its checkpoint: on resume the
    # stale rows go.
    with open(tmp_path / 'runs/split/losses.csv', 'a') as f:
        f.write('2,99,0.5\n')
    assert train(tmp_path, tiny, '--name', 'split', '--resume', *speedups) == 0
    whole = load_checkpoint(str(tmp_path / 'runs/whole/epoch-last.pth'))
    split = load_checkpoint(str(tmp_path / 'runs/split/epoch-last.pth'))
    assert_close_states(whole['model']['sd'], split['model']['sd'], 1e-6)
    rows = read_csv(tmp_path / 'runs/whole/losses.csv')
    assert rows == read_csv(tmp_path / 'runs/split/losses.csv')
    # 3 epochs of 3 steps (3 images x repeat 2 in batches of 2), numbered on.
    assert rows[0] == 'epoch,step,loss' and len(rows) == 10
    assert [r.split(',')[:2] for r in rows[1:]][::3] == [['1', '1'], ['2', '4'], ['3', '7']]
    assert np.isclose(np.mean([float(r.split(',')[2]) for r in rows[7:]]),
                      float(logged_loss(tmp_path / 'runs/whole/log.txt')), atol=1e-4)


def logged_loss(log_path):
    line = [l for l in read_csv(log_path) if l.startswith('epoch 3/3')][0]
    return line.split('train: loss=')[1].split(',')[0]


OFFICIAL_FORWARD = r'''
import json, sys
import numpy as np
import torch
torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the official code calls .cuda()
sys.path.insert(0, sys.argv[1])
import models
ckpt = torch.load(sys.argv[2], map_location='cpu', weights_only=False)
model = models.make(ckpt['model'], load_sd=True).eval()
d = np.load(sys.argv[3])
with torch.no_grad():
    out = model(*(torch.from_numpy(d[k]) for k in ('inp', 'coord', 'cell')))
np.save(sys.argv[4], out.numpy())
'''


def test_checkpoint_of_a_run_with_every_speed_up_loads_in_the_official_code(tmp_path, tiny):
    official = shared_path('gpu', 'official-liif')
    assert train(tmp_path, tiny, '--name', 'fast', '--set', 'epoch_max=1', *SPEEDUPS) == 0
    ckpt_path = str(tmp_path / 'runs/fast/epoch-last.pth')
    batch = fixed_batch()
    inputs = {k: batch[k].numpy() for k in ('inp', 'coord', 'cell')}
    np.savez(tmp_path / 'inputs.npz', **inputs)
    script = tmp_path / 'official_forward.py'
    script.write_text(OFFICIAL_FORWARD)
    result = subprocess.run([sys.executable, str(script), official, ckpt_path,
                             str(tmp_path / 'inputs.npz'), str(tmp_path / 'out.npy')],
                            capture_output=True, text=True, timeout=120, cwd=official)
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = torch.from_numpy(np.load(tmp_path / 'out.npy'))
    ours = models.make(load_checkpoint(ckpt_path)['model'], load_sd=True).eval()
    with torch.no_grad():
        out = ours(*(batch[k] for k in ('inp', 'coord', 'cell')), impl='reference')
    assert out.shape == theirs.shape == (4, 32, 3)
    assert (out - theirs).abs().max().item() < 1e-5
    # Under the official key names (compiling the step, not the module, adds no prefix).
    assert json.dumps(sorted(load_checkpoint(ckpt_path)['model']['sd'])) == \
        json.dumps(sorted(models.make(TINY_MODEL).state_dict()))
