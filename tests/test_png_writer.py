"""The parallel PNG writer: valid files that read back identical through pypng and Pillow."""
import io
import os
import zlib

import numpy as np
import png
import pytest
from PIL import Image

from conftest import REPO
from utils.image_io.write import write_bands
from utils.image_io.write import PNGWriter, _zlib_header, adler32_combine, write_png


def read_pypng(data: bytes, planes: int) -> np.ndarray:
    """Samples as pypng decodes them (it checks the zlib stream's Adler-32 and each CRC)."""
    width, height, rows, _ = png.Reader(bytes=data).read()
    return np.array([np.asarray(row) for row in rows]).reshape(height, width, planes)


@pytest.mark.parametrize('planes', [1, 2, 3, 4])
@pytest.mark.parametrize('bits', [8, 16])
def test_bands_of_any_height_read_back_identical(planes, bits):
    rng = np.random.default_rng(planes * bits)
    dtype = np.uint16 if bits == 16 else np.uint8
    samples = rng.integers(0, 2 ** bits, size=(41, 29, planes), dtype=dtype)
    cuts = [0, 1, 2, 9, 10, 33, 41]  # bands of 1, 1, 7, 1, 23 and 8 rows
    buf = io.BytesIO()
    write_png(buf, (41, 29), planes, bits, [samples[a:b] for a, b in zip(cuts, cuts[1:])],
              threads=3)
    assert np.array_equal(read_pypng(buf.getvalue(), planes), samples)
    if bits == 8:
        pil = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        assert np.array_equal(pil.reshape(samples.shape), samples)


def test_an_upscaled_photo_is_no_larger_than_1_2x_pillows():
    """The bundled sample, bicubic x4 (a smooth image like an upscaler's output), in the
    demo's bands of 65536 pixels."""
    image = Image.open(os.path.join(REPO, 'assets', 'astronaut-128.png')).convert('RGB')
    rgb = np.asarray(image.resize((512, 512), Image.BICUBIC))
    ours, pillow = io.BytesIO(), io.BytesIO()
    write_png(ours, (512, 512), 3, 8, [rgb[i:i + 128] for i in range(0, 512, 128)])
    Image.fromarray(rgb).save(pillow, format='PNG')
    assert np.array_equal(np.asarray(Image.open(ours)), rgb)
    assert len(ours.getvalue()) <= 1.2 * len(pillow.getvalue())


def test_adler32_combine_equals_zlib_on_the_concatenation():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = (rng.integers(0, 256, size=rng.integers(0, 200000), dtype=np.uint8).tobytes()
                for _ in range(2))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


@pytest.mark.parametrize('level', range(10))
def test_zlib_header_is_valid_at_every_level(level):
    header = _zlib_header(level)
    assert header[0] == 0x78 and (header[0] * 256 + header[1]) % 31 == 0
    data = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = data.compress(b'abc' * 100) + data.flush()
    assert zlib.decompress(header + body + adler32_combine(1, zlib.adler32(b'abc' * 100),
                                                           300).to_bytes(4, 'big')) == \
        b'abc' * 100


def test_wrong_rows_are_refused_and_no_file_is_left(tmp_path):
    writer = PNGWriter(io.BytesIO(), (4, 3), 3, 8)
    with pytest.raises(ValueError, match=r'expected \(rows, 3, 3\)'):
        writer.write(np.zeros((1, 4, 3), np.uint8))
    writer.write(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="more than the image's 4 rows"):
        writer.write(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='3 rows given for an image of 4'):
        writer.close()
    out = tmp_path / 'short.png'
    with pytest.raises(ValueError, match='rows given'):
        write_bands(str(out), (4, 3), 3, 8, [np.zeros((3, 3, 3), np.uint8)])
    assert list(tmp_path.iterdir()) == []
