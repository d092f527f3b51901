"""test.py end to end: the official PSNRs with the official checkpoint, and clear errors."""
import csv
import os

import pytest

import test as test_script
from conftest import REPO, shared_path

PSNR_TOLERANCE = 5e-4


def official_psnr(set_name: str, scale: int) -> float:
    with open(shared_path('reference', 'psnr.tsv')) as f:
        for row in csv.DictReader(f, delimiter='\t'):
            if row['set'] == set_name and int(row['scale']) == scale:
                return float(row['psnr'])
    raise LookupError(f'{set_name} x{scale} not in psnr.tsv')


def run_test(capsys, *argv):
    code = test_script.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize('scale', [4, 6])
def test_set5_psnr_matches_official(capsys, official_checkpoint, scale):
    code, out, _ = run_test(capsys, '--config', os.path.join(REPO, f'configs/test/test-set5-{scale}.yaml'),
                            '--model', official_checkpoint,
                            '--data-root', shared_path('data'), '--device', 'cpu', '--quiet')
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith('result: ')
    assert abs(float(last.split()[1]) - official_psnr('Set5', scale)) < PSNR_TOLERANCE


def test_missing_data_folder_names_the_path(capsys, official_checkpoint, tmp_path):
    code, _, err = run_test(capsys, '--config', os.path.join(REPO, 'configs/test/test-set5-4.yaml'),
                            '--model', official_checkpoint, '--data-root', str(tmp_path))
    assert code == 2
    assert f'image folder not found: {tmp_path}/benchmark/Set5/LR_bicubic/X4' in err
    assert 'Traceback' not in err


def test_checkpoint_that_is_not_liif_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    code, _, err = run_test(capsys, '--config', os.path.join(REPO, 'configs/test/test-set5-4.yaml'),
                            '--model', str(bad), '--data-root', shared_path('data'))
    assert code == 2
    assert err.startswith('error: ') and 'is a text file, not a checkpoint' in err


def test_config_without_test_dataset_names_the_key(capsys, tmp_path, official_checkpoint):
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text('eval_type: benchmark-4\n')
    code, _, err = run_test(capsys, '--config', str(cfg), '--model', official_checkpoint)
    assert code == 2
    assert 'cfg.yaml: test_dataset: missing (required)' in err


def test_every_promised_test_config_exists():
    names = set(os.listdir(os.path.join(REPO, 'configs', 'test')))
    wanted = {f'test-div2k-{s}.yaml' for s in (2, 3, 4, 6, 12, 18, 24, 30)}
    wanted |= {f'test-{b}-{s}.yaml' for b in ('set5', 'set14', 'b100', 'urban100')
               for s in (2, 3, 4, 6, 8, 12)}
    assert wanted <= names


@pytest.mark.parametrize('option,value', [('--encoder-tile', '40'), ('--max-memory', '90MB')])
def test_encoder_tiles_give_the_official_set5_psnr(capsys, official_checkpoint, option, value):
    """Tiled encoding (tiles of 40 LR pixels, smaller than every Set5 x4 input, or the tiles a
    90 MB budget gives: 48x128 for the 128x128 baby, whole for the small images; each plus a
    halo of the encoder's receptive radius) changes no digit of the official x4 number."""
    code, out, err = run_test(capsys, '--config',
                              os.path.join(REPO, 'configs/test/test-set5-4.yaml'),
                              '--model', official_checkpoint, '--data-root',
                              shared_path('data'), '--quiet', option, value)
    assert code == 0, err
    assert abs(float(out.split()[-1]) - official_psnr('Set5', 4)) < PSNR_TOLERANCE


def test_a_memory_budget_too_small_is_one_line(capsys, official_checkpoint):
    code, _, err = run_test(capsys, '--config', os.path.join(REPO, 'configs/test/test-set5-4.yaml'),
                            '--model', official_checkpoint, '--data-root', shared_path('data'),
                            '--quiet', '--max-memory', '8MB')
    assert code == 2
    assert err.startswith('error: a memory budget of 8.0 MB is too small for this model on a ')
    assert err.count('\n') == 1
