"""Data preparation: MATLAB-bicubic LR files, the download script's layout, CelebA resizing."""
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from scripts import download_data, make_lr, resize


def compare_with_shipped(set_name, tmp_path):
    root = shared_path('data', 'benchmark', set_name)
    out = tmp_path / set_name
    assert make_lr.make_lr(os.path.join(root, 'HR'), str(out), [2, 3, 4], quiet=True) > 0
    stats = {}
    for s in (2, 3, 4):
        same = total = worst = 0
        for name in sorted(os.listdir(out / f'X{s}')):
            ours = np.asarray(Image.open(out / f'X{s}' / name).convert('RGB')).astype(int)
            ref = np.asarray(Image.open(os.path.join(root, 'LR_bicubic', f'X{s}', name))
                             .convert('RGB')).astype(int)
            assert ours.shape == ref.shape, name
            diff = np.abs(ours - ref)
            same += (diff == 0).sum()
            total += diff.size
            worst = max(worst, diff.max())
        stats[s] = (same / total, worst)
    return stats


@pytest.mark.parametrize('set_name', ['Set5', 'Set14'])
def test_make_lr_reproduces_the_shipped_lr_files(tmp_path, set_name):
    stats = compare_with_shipped(set_name, tmp_path)
    assert stats[3] == (1.0, 0)                    # x3: identical
    for s in (2, 4):
        fraction, worst = stats[s]
        assert fraction >= 0.985 and worst <= 2, (s, fraction, worst)


def test_make_lr_names_files_like_edsr(tmp_path):
    hr = tmp_path / 'hr'
    hr.mkdir()
    Image.fromarray(np.zeros((13, 10, 3), np.uint8)).save(hr / 'pic.png')
    make_lr.make_lr(str(hr), str(tmp_path / 'lr'), [2, 3], quiet=True)
    assert Image.open(tmp_path / 'lr' / 'X2' / 'picx2.png').size == (5, 6)   # modcrop 12x10
    assert Image.open(tmp_path / 'lr' / 'X3' / 'picx3.png').size == (3, 4)   # modcrop 12x9


def png_bytes(h, w):
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format='PNG')
    return buf.getvalue()


def make_fake_archives(archives):
    """Archives with the inner layout of the real DIV2K zips and EDSR benchmark.tar."""
    archives.mkdir(parents=True)
    with zipfile.ZipFile(archives / 'DIV2K_valid_HR.zip', 'w') as z:
        z.writestr('DIV2K_valid_HR/0801.png', png_bytes(12, 12))
    for s in (2, 3, 4):
        with zipfile.ZipFile(archives / f'DIV2K_valid_LR_bicubic_X{s}.zip', 'w') as z:
            z.writestr(f'DIV2K_valid_LR_bicubic/X{s}/0801x{s}.png', png_bytes(12 // s, 12 // s))
    with tarfile.open(archives / 'benchmark.tar', 'w') as t:
        for set_name in ('Set5', 'Urban100'):
            for member, data in ((f'benchmark/{set_name}/HR/a.png', png_bytes(8, 8)),
                                 (f'benchmark/{set_name}/LR_bicubic/X2/ax2.png', png_bytes(4, 4))):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))


def test_download_script_unpacks_into_the_config_layout(tmp_path, monkeypatch):
    root = tmp_path / 'load'
    make_fake_archives(root / '_archives')
    monkeypatch.setattr(download_data, 'PUBLISHED', {})  # the fakes are not the real ones
    problems = download_data.fetch(['benchmark', 'div2k-valid-hr', 'div2k-valid-lr'], str(root),
                                   quiet=True)
    assert problems == []
    for path in ('div2k/DIV2K_valid_HR/0801.png',
                 'div2k/DIV2K_valid_LR_bicubic/X2/0801x2.png',
                 'div2k/DIV2K_valid_LR_bicubic/X4/0801x4.png',
                 'benchmark/Set5/HR/a.png', 'benchmark/Urban100/LR_bicubic/X2/ax2.png'):
        assert (root / path).is_file(), path
    assert not [n for n in os.listdir(root / 'div2k') if n.startswith('.unpack')]
    assert download_data.fetch(['benchmark'], str(root), quiet=True) == []  # a re-run: harmless


def test_a_damaged_archive_is_refused_and_never_becomes_the_reference(tmp_path, monkeypatch):
    """Checked against the published size and SHA-256 where there are some, else by its own
    checksums; the damaged file refused first, the whole one accepted after it."""
    archives = tmp_path / 'load' / '_archives'
    make_fake_archives(archives)
    good = {name: (archives / name).read_bytes() for name in os.listdir(archives)}
    # published: the fake's own size and hash stand for the source's
    monkeypatch.setattr(download_data, 'PUBLISHED', {'DIV2K_valid_HR.zip': (
        len(good['DIV2K_valid_HR.zip']),
        download_data.sha256_of(str(archives / 'DIV2K_valid_HR.zip')))})
    damaged = bytearray(good['DIV2K_valid_HR.zip'])
    damaged[len(damaged) // 2] ^= 0xFF
    (archives / 'DIV2K_valid_HR.zip').write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match='the published archive has'):
        download_data.fetch(['div2k-valid-hr'], str(tmp_path / 'load'), quiet=True)
    # not published: a flipped byte inside a PNG member of the tar, then a cut-short zip
    tar = bytearray(good['benchmark.tar'])
    at = tar.index(b'IDAT') + 8
    tar[at] ^= 0xFF
    (archives / 'benchmark.tar').write_bytes(bytes(tar))
    with pytest.raises(ValueError, match='is damaged'):
        download_data.fetch(['benchmark'], str(tmp_path / 'load'), quiet=True)
    (archives / 'DIV2K_valid_LR_bicubic_X2.zip').write_bytes(
        good['DIV2K_valid_LR_bicubic_X2.zip'][:40])
    with pytest.raises(ValueError, match='is damaged'):
        download_data.fetch(['div2k-valid-lr'], str(tmp_path / 'load'), quiet=True)
    assert not (tmp_path / 'load' / 'benchmark').exists()  # nothing unpacked from them
    for name, data in good.items():
        (archives / name).write_bytes(data)
    assert download_data.fetch(['benchmark', 'div2k-valid-hr', 'div2k-valid-lr'],
                               str(tmp_path / 'load'), quiet=True) == []


def test_unreachable_source_is_reported_with_its_url(tmp_path, monkeypatch):
    url = 'http://127.0.0.1:9/benchmark.tar'   # nothing listens on the discard port
    monkeypatch.setattr(download_data, 'sources',
                        lambda: {'benchmark': [download_data.Archive(url, '.')]})
    problems = download_data.fetch(['benchmark'], str(tmp_path), timeout=5, quiet=True)
    assert len(problems) == 1 and problems[0].startswith(url) and 'by hand' in problems[0]


def test_resize_folder_follows_the_celebahq_recipe(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(src / f'{i}.jpg')
    assert resize.main(['--src', str(src), '--out', str(tmp_path / 'out'), '--sizes', '16', '8',
                        '--split-json', str(tmp_path / 'split.json'), '--train-count', '2',
                        '--quiet']) == 0
    first = Image.open(src / '1.jpg').convert('RGB').resize((16, 16), Image.BICUBIC)
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'out' / '16' / '1.png')),
                          np.asarray(first))
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'out' / '8' / '1.png')),
                          np.asarray(first.resize((8, 8), Image.BICUBIC)))
    assert json.loads((tmp_path / 'split.json').read_text()) == {
        'train': ['0.png', '1.png'], 'val': ['2.png']}
