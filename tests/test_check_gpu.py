"""scripts/check_gpu.sh on a machine without CUDA: a dry run saying what it would measure."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA here: the real run is the check')
def test_check_gpu_is_a_dry_run_without_cuda():
    result = subprocess.run(['bash', os.path.join(REPO, 'scripts', 'check_gpu.sh')],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'PYTHON': sys.executable})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('dry run: no CUDA device here')
    for what in ('LIIF_TEST_DEVICE=cuda', 'bench_inference.py', '--precision fp32 bf16 fp16',
                 '--impl reference --amp', 'ddp'):
        assert any(what in line for line in lines), what
