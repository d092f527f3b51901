"""Shared fixtures: the repo on sys.path, and where the ground truth and data are found.

Reference vectors and tiny checkpoints: ../shared/reference when present (the full set),
else the compact copy in tests/reference (see scripts/make_test_reference.py). The official
checkpoint: ../shared/pretrained, else pretrained/ (fetched by scripts/setup.sh). Benchmark
images: $LIIF_DATA_ROOT, then ./load, then ../shared/data. What is missing fails the test in
CI and skips it elsewhere, with one line saying how to get it.
"""
import gzip
import json
import os
import sys
from typing import Any, List

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('LIIF_SHARED', os.path.join(os.path.dirname(REPO), 'shared'))
LOCAL_REFERENCE = os.path.join(REPO, 'tests', 'reference')
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The device of the device-parametrised tests (the reference-vector tests): the CPU, or what
# LIIF_TEST_DEVICE names (scripts/check_gpu.sh sets cuda). TF32 is off there: the vectors are
# compared at 1e-5.
TEST_DEVICE_NAME = os.environ.get('LIIF_TEST_DEVICE', 'cpu')


def vector_device():
    import torch
    device = torch.device(TEST_DEVICE_NAME)
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


HOW_TO_GET = {
    'data': 'benchmark images: set LIIF_DATA_ROOT, or run python scripts/download_data.py '
            '--only benchmark (into ./load)',
    'pretrained': 'the official checkpoint: run bash scripts/setup.sh',
    'reference': 'reference vectors: tests/reference is part of the repository',
}


def data_roots() -> List[str]:
    roots = [os.environ.get('LIIF_DATA_ROOT'), os.path.join(REPO, 'load'),
             os.path.join(SHARED, 'data')]
    return [r for r in roots if r]


def candidates(kind: str, rest: List[str]) -> List[str]:
    if kind == 'data':
        return [os.path.join(root, *rest) for root in data_roots()]
    if kind == 'pretrained':
        return [os.path.join(SHARED, 'pretrained', *rest), os.path.join(REPO, 'pretrained', *rest)]
    if kind == 'reference':
        local = os.path.join(LOCAL_REFERENCE, *rest)
        return [os.path.join(SHARED, 'reference', *rest), local, local + '.gz']
    return [os.path.join(SHARED, kind, *rest)]


def shared_path(kind: str, *rest: str) -> str:
    """The first place that has `rest` under `kind` ('data', 'pretrained' or 'reference');
    fails in CI when none has it, skips elsewhere."""
    for path in candidates(kind, list(rest)):
        if os.path.exists(path):
            return path
    message = f"not found: {os.path.join(kind, *rest)}; {HOW_TO_GET.get(kind, 'see ../shared')}"
    if os.environ.get('CI'):
        pytest.fail(message)
    pytest.skip(message)


def load_json(path: str) -> Any:
    """A JSON file, gzipped or not."""
    with (gzip.open(path, 'rt') if path.endswith('.gz') else open(path)) as f:
        return json.load(f)


@pytest.fixture
def official_checkpoint() -> str:
    return shared_path('pretrained', 'edsr-baseline-liif.pth')


def shared_params(load, n_args: int = 1):
    """Parametrize values that `load` reads at collection time. Without the data: in CI a
    failure, elsewhere one placeholder test that is skipped with the reason (collection
    itself never stops)."""
    try:
        return load()
    except pytest.skip.Exception as e:
        return [pytest.param(*([None] * n_args), marks=pytest.mark.skip(reason=str(e)))]


def render_normalised(model, inp, size, **options):
    """The renderer's (H, W, 3) output in [0, 1] for an input already normalised as the
    official configs do ((x - 0.5) / 0.5, as the reference vectors hold it)."""
    from inference import RenderOptions, render_bands
    bands = render_bands(model, inp * 0.5 + 0.5, size, RenderOptions(**options))
    return __import__('torch').cat([band for _, band in bands])
