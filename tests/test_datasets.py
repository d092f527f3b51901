"""Datasets and wrappers: official sampling semantics and clear errors."""
import os
import re
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import datasets
from conftest import shared_path
from datasets.image_folder import pair_names
from datasets.sampling import resize_bicubic


def write_png(path, h, w, seed=0, mode='RGB'):
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == 'RGB' else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def official_resize_fn(img, size):
    # The official wrappers.resize_fn, written with torchvision as the official code does.
    return transforms.ToTensor()(
        transforms.Resize(size, transforms.InterpolationMode.BICUBIC)(
            transforms.ToPILImage()(img)))


@pytest.mark.parametrize('size', [(13, 9), 7])
def test_resize_bicubic_matches_official_torchvision_path(size):
    img = torch.rand(3, 40, 40)
    expected = official_resize_fn(img, size if isinstance(size, int) else list(size))
    assert torch.equal(resize_bicubic(img, size), expected)


def test_downsampled_wrapper_crops_hr_top_left_and_sets_cell(tmp_path):
    write_png(tmp_path / 'a.png', 100, 77)
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    wrapper = datasets.make({'name': 'sr-implicit-downsampled', 'args': {'scale_min': 6}},
                            args={'dataset': folder})
    sample = wrapper[0]
    hr = folder[0]
    assert sample['inp'].shape == (3, 16, 12)          # floor(100/6), floor(77/6)
    assert sample['coord'].shape == (96 * 72, 2)        # round(16*6), round(12*6)
    assert torch.equal(sample['gt'], hr[:, :96, :72].reshape(3, -1).t())
    assert torch.allclose(sample['cell'][0], torch.tensor([2 / 96, 2 / 72]))
    assert torch.equal(sample['inp'], official_resize_fn(hr[:, :96, :72], (16, 12)))


def test_downsampled_training_sample_sizes_and_queries(tmp_path):
    write_png(tmp_path / 'a.png', 200, 150)
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    wrapper = datasets.make({'name': 'sr-implicit-downsampled', 'args': {
        'inp_size': 12, 'scale_min': 1, 'scale_max': 4, 'augment': True, 'sample_q': 100}},
        args={'dataset': folder})
    random.seed(0)
    np.random.seed(0)
    for _ in range(5):
        sample = wrapper[0]
        assert sample['inp'].shape == (3, 12, 12)
        assert sample['coord'].shape == sample['cell'].shape == (100, 2)
        assert sample['gt'].shape == (100, 3)
        side = round(2 / sample['cell'][0, 0].item())
        assert 12 <= side <= 48


def test_image_smaller_than_crop_names_file_and_sizes(tmp_path):
    write_png(tmp_path / 'small.png', 30, 40)
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    wrapper = datasets.make({'name': 'sr-implicit-downsampled',
                             'args': {'inp_size': 48, 'scale_min': 1}}, args={'dataset': folder})
    with pytest.raises(ValueError, match=r'small.png: image 30x40 is smaller than the 48x48'):
        wrapper[0]


def test_paired_wrapper_on_benchmark_files():
    root = shared_path('data', 'benchmark', 'Set5')
    pairs = datasets.make({'name': 'paired-image-folders', 'args': {
        'root_path_1': os.path.join(root, 'LR_bicubic', 'X3'),
        'root_path_2': os.path.join(root, 'HR')}})
    wrapper = datasets.make({'name': 'sr-implicit-paired', 'args': {}}, args={'dataset': pairs})
    names = [(pairs.dataset_1.names[i], pairs.dataset_2.names[j]) for i, j in pairs.pairs]
    assert ('womanx3.png', 'woman.png') in names
    sample = wrapper[names.index(('womanx3.png', 'woman.png'))]
    assert sample['inp'].shape == (3, 114, 76)
    assert sample['coord'].shape == (342 * 228, 2)   # HR 344x228 cropped to 3*114 x 3*76


def test_grayscale_images_load_as_rgb():
    root = shared_path('data', 'benchmark', 'Set14', 'HR')
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': root}})
    img = folder[folder.names.index('bridge.png')]
    assert img.shape == (3, 512, 512)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_pairing_by_name_survives_sort_order_differences():
    names_lr = sorted(['3096x2.png', '30961x2.png'])   # '30961x2' sorts before '3096x2'
    names_hr = sorted(['3096.png', '30961.png'])       # '3096.' sorts before '30961'
    pairs = pair_names(names_lr, names_hr)
    assert [(names_lr[i], names_hr[j]) for i, j in pairs] == [
        ('30961x2.png', '30961.png'), ('3096x2.png', '3096.png')]


def test_names_that_do_not_pair_are_refused_unless_sorted_pairing_is_asked_for():
    lr, hr = ['ax4.png', 'cx4.png'], ['a.png', 'b.png']
    with pytest.raises(ValueError, match="'cx4.png' has no partner in folder 2"):
        pair_names(lr, hr)
    with pytest.raises(ValueError, match="'b.png' has no partner in folder 1"):
        pair_names(['ax4.png'], ['a.png', 'b.png'])
    assert pair_names(lr, hr, 'sorted') == [(0, 0), (1, 1)]  # the official code's pairing
    with pytest.raises(ValueError, match='differ in size'):
        pair_names(['ax4.png'], hr, 'sorted')


def test_bin_and_in_memory_cache_equal_no_cache(tmp_path):
    src = tmp_path / 'hr'
    src.mkdir()
    write_png(src / 'a.png', 10, 9, seed=1)
    write_png(src / 'b.png', 8, 11, seed=2, mode='L')
    outs = {}
    for cache in ('none', 'bin', 'in_memory'):
        folder = datasets.make({'name': 'image-folder',
                                'args': {'root_path': str(src), 'cache': cache, 'repeat': 2}})
        assert len(folder) == 4
        outs[cache] = [folder[i] for i in range(4)]
    for cache in ('bin', 'in_memory'):
        assert all(torch.equal(a, b) for a, b in zip(outs['none'], outs[cache]))
    assert [re.sub(r'_\d+_\d+', '', n) for n in sorted(os.listdir(tmp_path / '_bin_hr'))] == \
        ['a.png.npy', 'b.png.npy']


def test_bin_cache_keeps_files_of_one_stem_apart(tmp_path):
    """baby.png and baby.jpg are two images: each has its own cached copy."""
    src = tmp_path / 'hr'
    src.mkdir()
    write_png(src / 'baby.png', 10, 9, seed=1)
    Image.fromarray(np.full((7, 6, 3), 200, np.uint8)).save(src / 'baby.jpg', quality=95)
    spec = {'name': 'image-folder', 'args': {'root_path': str(src), 'cache': 'bin'}}
    for _ in range(2):
        cached = datasets.make(spec)
        plain = datasets.make({'name': 'image-folder', 'args': {'root_path': str(src)}})
        assert all(torch.equal(cached[i], plain[i]) for i in range(2))
    assert len(os.listdir(tmp_path / '_bin_hr')) == 2


def test_bin_cache_notices_a_changed_source(tmp_path):
    src = tmp_path / 'hr'
    src.mkdir()
    write_png(src / 'a.png', 10, 9, seed=1)
    spec = {'name': 'image-folder', 'args': {'root_path': str(src), 'cache': 'bin'}}
    before = datasets.make(spec)[0]
    write_png(src / 'a.png', 10, 9, seed=2)  # same name and size, new content
    after = datasets.make(spec)[0]
    truth = torch.from_numpy(np.array(Image.open(src / 'a.png').convert('RGB'))).permute(
        2, 0, 1).float() / 255
    assert not torch.equal(before, after) and torch.equal(after, truth)
    assert len(os.listdir(tmp_path / '_bin_hr')) == 1  # the stale copy is gone


def test_unknown_cache_is_an_error(tmp_path):
    write_png(tmp_path / 'a.png', 4, 4)
    with pytest.raises(ValueError, match="unknown cache 'memory'; expected one of none, bin"):
        datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path),
                                                        'cache': 'memory'}})


def test_missing_and_empty_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='image folder not found: .*nowhere'):
        datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path / 'nowhere')}})
    (tmp_path / 'notes.txt').write_text('not an image')
    with pytest.raises(ValueError, match=f'no images found in {tmp_path}'):
        datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})


def test_corrupt_image_names_the_file(tmp_path):
    write_png(tmp_path / 'good.png', 8, 8)
    data = (tmp_path / 'good.png').read_bytes()
    (tmp_path / 'broken.png').write_bytes(data[:len(data) // 2])
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    with pytest.raises(ValueError, match='cannot read image .*broken.png'):
        folder[folder.names.index('broken.png')]


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'image_folder'; known: image-folder, "
                                         r"paired-image-folders, sr-implicit-downsampled"):
        datasets.make({'name': 'image_folder'})


def test_downsampled_fast_wrapper_gives_the_whole_hr_grid(tmp_path):
    """SRNO's and LTE's grid form: the same LR, cell and HR pixels as the flat wrapper."""
    write_png(tmp_path / 'a.png', 100, 77)
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    grid = datasets.make({'name': 'sr-implicit-downsampled-fast', 'args': {'scale_min': 6}},
                         args={'dataset': folder})[0]
    hr = folder[0]
    assert grid['inp'].shape == (3, 16, 12) and grid['coord'].shape == (96, 72, 2)
    assert torch.equal(grid['gt'], hr[:, :96, :72])
    assert torch.equal(grid['cell'], torch.tensor([2 / 96, 2 / 72]))
    assert torch.equal(grid['inp'], official_resize_fn(hr[:, :96, :72], (16, 12)))
    assert torch.allclose(grid['coord'][3, 5], torch.tensor([-1 + 7 / 96, -1 + 11 / 72]))


def test_downsampled_fast_training_sample_draws_hr_pixels_as_an_lr_sized_grid(tmp_path):
    write_png(tmp_path / 'a.png', 120, 120)
    folder = datasets.make({'name': 'image-folder', 'args': {'root_path': str(tmp_path)}})
    wrapper = datasets.make({'name': 'sr-implicit-downsampled-fast', 'args': {
        'inp_size': 10, 'scale_min': 3, 'scale_max': 3}}, args={'dataset': folder})
    random.seed(1)
    np.random.seed(1)
    sample = wrapper[0]
    assert sample['inp'].shape == (3, 10, 10)
    assert sample['coord'].shape == (10, 10, 2) and sample['gt'].shape == (3, 10, 10)
    assert torch.equal(sample['cell'], torch.tensor([2 / 30, 2 / 30]))
    # Every query is the centre of a distinct pixel of the 30x30 HR crop, and gt is its value.
    index = ((sample['coord'] + 1) * 15 - 0.5).round().long().view(-1, 2)
    assert len({tuple(i) for i in index.tolist()}) == 100
    random.seed(1)
    random.uniform(3, 3)  # the wrapper draws the scale first
    x0, y0 = random.randint(0, 90), random.randint(0, 90)
    crop = folder[0][:, x0:x0 + 30, y0:y0 + 30]
    assert torch.equal(sample['gt'].reshape(3, -1), crop[:, index[:, 0], index[:, 1]])


def test_paired_fast_wrapper_keeps_an_lr_sized_window_of_the_hr_grid(tmp_path):
    os.makedirs(tmp_path / 'lr')
    os.makedirs(tmp_path / 'hr')
    write_png(tmp_path / 'lr' / 'ax2.png', 20, 20)
    write_png(tmp_path / 'hr' / 'a.png', 40, 40, seed=1)
    pairs = datasets.make({'name': 'paired-image-folders', 'args': {
        'root_path_1': str(tmp_path / 'lr'), 'root_path_2': str(tmp_path / 'hr')}})
    whole = datasets.make({'name': 'sr-implicit-paired-fast', 'args': {}},
                          args={'dataset': pairs})[0]
    assert whole['coord'].shape == (40, 40, 2) and torch.equal(whole['gt'], pairs[0][1])
    crop = datasets.make({'name': 'sr-implicit-paired-fast', 'args': {'inp_size': 8}},
                         args={'dataset': pairs})[0]
    assert crop['inp'].shape == (3, 8, 8) and crop['gt'].shape == (3, 8, 8)
    assert torch.equal(crop['cell'], torch.tensor([2 / 16, 2 / 16]))
