"""The compact ground truth under tests/reference against the full one in ../shared: every
array a faithful subset, every checkpoint and JSON file the same bytes, 4 MB at most.
(`lmf_init_cmsr/` is not a copy: the official table maker's tables, made for the tests.)"""
import gzip
import os

import numpy as np
import pytest

from conftest import LOCAL_REFERENCE, SHARED, shared_params

MAX_BYTES = 4 * 2 ** 20
NOT_COPIES = ('lmf_init_cmsr',)


def compact_files():
    files = (os.path.relpath(os.path.join(d, f), LOCAL_REFERENCE)
             for d, _, fs in os.walk(LOCAL_REFERENCE) for f in fs)
    return sorted(f for f in files if f.split(os.sep)[0] not in NOT_COPIES)


def full_copy(name: str) -> str:
    """The ../shared/reference file that `name` was made from (fails in CI when missing)."""
    from conftest import shared_path
    stem = name[:-3] if name.endswith('.gz') else name
    path = shared_path('reference', *stem.split(os.sep))
    if path.startswith(LOCAL_REFERENCE):
        pytest.skip(f'../shared/reference not found ({SHARED}): nothing to compare with')
    return path


def test_compact_copy_is_small_and_complete():
    files = compact_files()
    assert sum(os.path.getsize(os.path.join(LOCAL_REFERENCE, f)) for f in files) <= MAX_BYTES
    names = {os.path.basename(f) for f in files}
    assert {'index.json.gz', 'official_layouts.json.gz', 'tiny_liif.pth', 'tiny_srno.pth',
            'official_x30.npz', 'tiny_swinir_lte_encoder.npz', 'tiny_lmliif.pth',
            'tiny_lmlte_cmsr_x12.npz', 's2m-tiny_lmliif.yaml', 'layouts-lmf.json.gz'} <= names


@pytest.mark.parametrize('name', shared_params(compact_files))
def test_compact_file_is_a_faithful_subset(name):
    full, compact = full_copy(name), os.path.join(LOCAL_REFERENCE, name)
    if name.endswith('.npz'):
        ours, theirs = np.load(compact), np.load(full)
        index = ours['query_index'] if 'query_index' in ours.files else None
        for key in ours.files:
            if key == 'query_index':
                continue
            expected = theirs[key]
            if index is not None and key in ('coord', 'cell', 'pred'):
                expected = expected[:, index]
            elif key == 'feat':
                expected = expected[:, :ours[key].shape[1]]
            assert np.array_equal(ours[key], expected), key
        assert set(theirs.files) - set(ours.files) <= {'pred01_clamped'}
    elif name.endswith('.gz'):
        with gzip.open(compact, 'rb') as f, open(full, 'rb') as g:
            assert f.read() == g.read()
    else:
        with open(compact, 'rb') as f, open(full, 'rb') as g:
            assert f.read() == g.read()
