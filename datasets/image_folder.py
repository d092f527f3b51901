"""Folders of images, optionally paired (LR folder, HR folder), read as float tensors."""
import json
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.files import atomic_path
from utils.image_io import read_image
from .datasets import register

CACHE_MODES = ('none', 'bin', 'in_memory')
# EDSR LR file names end in x<scale>: babyx4.png is the LR of baby.png.
SCALE_SUFFIX = re.compile(r'x\d+$')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def read_rgb(path: str) -> torch.Tensor:
    """Reads any image as RGB, as a viewer shows it (see utils.image_io.read.read_image: EXIF
    orientation applied, 16-bit and float samples scaled to [0, 1]; grayscale repeated on the
    three channels, alpha dropped). For 8-bit files the values are those of the official
    code's `ToTensor()(Image.open(path).convert('RGB'))`.

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    return torch.from_numpy(read_image(path).rgb).permute(2, 0, 1).contiguous()


def check_unique_stems(names: List[str], out_name: Callable[[str], str]) -> None:
    """ValueError if two input names give the same output file name (a.png and a.jpg both
    writing a.png: one would silently replace the other)."""
    seen: Dict[str, str] = {}
    for name in names:
        out = out_name(name)
        if out in seen:
            raise ValueError(f"'{seen[out]}' and '{name}' would both write {out}; rename or "
                             "move one of them")
        seen[out] = name


def list_images(root_path: str, split_file: Optional[str] = None,
                split_key: Optional[str] = None, first_k: Optional[int] = None) -> List[str]:
    """Sorted image file names of a folder, or those of `split_file[split_key]`."""
    if not os.path.isdir(root_path):
        raise FileNotFoundError(f"image folder not found: {root_path}")
    if split_file is None:
        names = sorted(n for n in os.listdir(root_path)
                       if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))
    else:
        with open(split_file) as f:
            try:
                splits = json.load(f)
            except ValueError as e:
                raise ValueError(f"split_file {split_file} is not valid JSON: {e}") from None
        if not isinstance(splits, dict) or not all(
                isinstance(v, list) and all(isinstance(n, str) for n in v)
                for v in splits.values()):
            raise ValueError(f"split_file {split_file} must map split names to lists of file "
                             'names, e.g. {"train": ["0001.png", ...], "val": [...]}')
        if split_key not in splits:
            raise KeyError(f"split_key '{split_key}' not in {split_file}; "
                           f"known: {', '.join(sorted(splits))}")
        names = splits[split_key]
        missing = [n for n in names if not os.path.isfile(os.path.join(root_path, n))]
        if missing:
            raise FileNotFoundError(f"split_file {split_file} names {len(missing)} file(s) "
                                    f"not in {root_path}, e.g. {missing[0]}")
    if first_k is not None:
        names = names[:first_k]
    if not names:
        raise ValueError(f"no images found in {root_path} (extensions: "
                         f"{', '.join(IMAGE_EXTENSIONS)})")
    return names


@register('image-folder')
class ImageFolder(Dataset):
    """Images of a folder as (3, H, W) float tensors in [0, 1], RGB.

    Args:
        root_path: the folder.
        split_file, split_key: a JSON file mapping split names to lists of file names.
        first_k: keep only the first k files.
        repeat: length multiplier (one epoch visits each image `repeat` times).
        cache: 'none' (read each time), 'bin' (decoded .npy files in `_bin_<folder>` beside
            the folder, written once per version of each file: keyed on its size and
            modification time) or 'in_memory' (decoded once, kept in RAM).
    """

    def __init__(self, root_path: str, split_file: Optional[str] = None,
                 split_key: Optional[str] = None, first_k: Optional[int] = None,
                 repeat: int = 1, cache: str = 'none'):
        if cache not in CACHE_MODES:
            raise ValueError(f"unknown cache '{cache}'; expected one of {', '.join(CACHE_MODES)}")
        self.repeat = repeat
        self.cache = cache
        self.names = list_images(root_path, split_file, split_key, first_k)
        self.paths = [os.path.join(root_path, n) for n in self.names]
        if cache == 'bin':
            self.files = [self._bin_file(root_path, p) for p in self.paths]
        elif cache == 'in_memory':
            self.files = [read_rgb(p) for p in self.paths]
        else:
            self.files = self.paths

    @staticmethod
    def _bin_file(root_path: str, path: str) -> str:
        """Decodes `path` once into an .npy file (uint8, H x W x 3; pickle-free), named after
        the source's size and modification time, so a changed source is decoded again (and
        its stale copy removed) instead of being read from the cache."""
        root = os.path.normpath(root_path)
        bin_root = os.path.join(os.path.dirname(root), '_bin_' + os.path.basename(root))
        stem = os.path.basename(path)  # with its extension: baby.png and baby.jpg differ
        info = os.stat(path)
        bin_file = os.path.join(bin_root, f'{stem}_{info.st_size}_{info.st_mtime_ns}.npy')
        if not os.path.exists(bin_file):
            os.makedirs(bin_root, exist_ok=True)
            img = (read_rgb(path) * 255).round().byte().permute(1, 2, 0).numpy()
            with atomic_path(bin_file) as tmp:
                np.save(tmp, img)
            stale = re.compile(re.escape(stem) + r'_\d+_\d+\.npy')
            for name in os.listdir(bin_root):
                if stale.fullmatch(name) and name != os.path.basename(bin_file):
                    os.remove(os.path.join(bin_root, name))
        return bin_file

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def path_of(self, idx: int) -> str:
        """The source file of item `idx`, for error messages."""
        return self.paths[idx % len(self.paths)]

    def __getitem__(self, idx: int) -> torch.Tensor:
        x = self.files[idx % len(self.files)]
        if self.cache == 'none':
            return read_rgb(x)
        if self.cache == 'bin':
            arr = np.load(x, allow_pickle=False)
            return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float() / 255
        return x


def pair_names(names_1: List[str], names_2: List[str], pairing: str = 'name',
               folders: Tuple[str, str] = ('folder 1', 'folder 2')) -> List[Tuple[int, int]]:
    """Index pairs matching folder 1 to folder 2.

    pairing 'name': a file of folder 1 matches the file of folder 2 with the same stem, or
    with the stem less an EDSR `x<scale>` suffix; every file must have one partner (ValueError
    naming the first that has none). 'sorted': the sorted orders are paired, as the official
    code does (same number of files needed).
    """
    if pairing not in ('name', 'sorted'):
        raise ValueError(f"pairing must be 'name' or 'sorted', got {pairing!r}")
    if pairing == 'sorted':
        if len(names_1) != len(names_2):
            raise ValueError(f"paired folders differ in size ({len(names_1)} vs "
                             f"{len(names_2)} images): sorted-order pairing needs as many")
        return [(i, i) for i in range(len(names_1))]
    stems_2 = {os.path.splitext(n)[0]: j for j, n in enumerate(names_2)}
    pairs, seen = [], {}
    hint = "names pair by stem, less an x<scale> suffix; `pairing: sorted` in the dataset's " \
        "args pairs the sorted orders instead, as the official code does"
    for i, name in enumerate(names_1):
        stem = os.path.splitext(name)[0]
        j = stems_2.get(stem, stems_2.get(SCALE_SUFFIX.sub('', stem)))
        if j is None:
            raise ValueError(f"paired folders: '{name}' has no partner in {folders[1]} "
                             f"({hint})")
        if j in seen:
            raise ValueError(f"paired folders: '{names_1[seen[j]]}' and '{name}' both pair "
                             f"with '{names_2[j]}' (one image would be scored twice and "
                             "another never); each file must pair with one")
        seen[j] = i
        pairs.append((i, j))
    unpaired = [n for j, n in enumerate(names_2) if j not in seen]
    if unpaired:
        raise ValueError(f"paired folders: '{unpaired[0]}' has no partner in {folders[0]} "
                         f"({hint})")
    return pairs


@register('paired-image-folders')
class PairedImageFolders(Dataset):
    """(image of folder 1, image of folder 2) pairs, e.g. (LR, HR); args as ImageFolder, and
    pairing: 'name' (by file name: see pair_names) or 'sorted' (the official code's)."""

    def __init__(self, root_path_1: str, root_path_2: str, split_file: Optional[str] = None,
                 split_key: Optional[str] = None, first_k: Optional[int] = None,
                 repeat: int = 1, cache: str = 'none', pairing: str = 'name'):
        kwargs = dict(split_file=split_file, split_key=split_key, first_k=first_k,
                      repeat=repeat, cache=cache)
        self.dataset_1 = ImageFolder(root_path_1, **kwargs)
        self.dataset_2 = ImageFolder(root_path_2, **kwargs)
        self.pairs = pair_names(self.dataset_1.names, self.dataset_2.names, pairing,
                                (root_path_1, root_path_2))

    def __len__(self) -> int:
        return len(self.pairs) * self.dataset_1.repeat

    def path_of(self, idx: int) -> str:
        i, j = self.pairs[idx % len(self.pairs)]
        return f"{self.dataset_1.path_of(i)} / {self.dataset_2.path_of(j)}"

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, torch.Tensor]:
        i, j = self.pairs[idx % len(self.pairs)]
        return self.dataset_1[i], self.dataset_2[j]
