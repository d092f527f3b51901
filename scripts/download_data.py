"""Download DIV2K and the SR benchmark sets into load/, in the layout the configs expect.

  load/div2k/DIV2K_{train,valid}_HR/0001.png ...
  load/div2k/DIV2K_{train,valid}_LR_bicubic/X{2,3,4}/0001x2.png ...
  load/benchmark/{Set5,Set14,B100,Urban100}/HR/<name>.png
  load/benchmark/{Set5,Set14,B100,Urban100}/LR_bicubic/X{2,3,4}/<name>x{s}.png

Archives go to load/_archives/ first; an interrupted download resumes from its .part file
(HTTP Range). Every archive is checked before it is unpacked: against the size and SHA-256
published for it where there are some (TensorFlow Datasets' for four DIV2K archives), else
by its own checksums (a zip's CRC-32 per member; a tar read whole). A damaged archive is an
error, never a reference. A source that cannot be reached is reported with its URL, so it
can be fetched by hand into load/_archives/ and this script re-run to unpack it.
CelebA-HQ has no working public link: see the README ("Data") and scripts/resize.py.

Examples:
  python scripts/download_data.py --only benchmark
  python scripts/download_data.py --root load --only div2k-valid-hr div2k-valid-lr
"""
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Dict, List, NamedTuple, Optional

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number, run_main  # noqa: E402

DIV2K_URL = 'https://data.vision.ee.ethz.ch/cvl/DIV2K/'
BENCHMARK_URL = 'https://cv.snu.ac.kr/research/EDSR/benchmark.tar'
CHUNK = 1 << 20
# Sizes and SHA-256 published for the DIV2K archives that have them; the reference is the
# source's, never what was downloaded (a damaged first download must not become one).
PUBLISHED_SOURCE = "TensorFlow Datasets' url_checksums/div2k.txt"
PUBLISHED = {
    'DIV2K_train_HR.zip': (
        3530603713, '9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335'),
    'DIV2K_train_LR_bicubic_X2.zip': (
        925390592, 'a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850'),
    'DIV2K_valid_HR.zip': (
        448993893, '20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc'),
    'DIV2K_valid_LR_bicubic_X2.zip': (
        117763600, '60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57'),
}


class Archive(NamedTuple):
    url: str
    dest: str     # folder under the root that the archive's top-level folders go into


def sources() -> Dict[str, List[Archive]]:
    """Named groups of archives."""
    groups = {'benchmark': [Archive(BENCHMARK_URL, '.')]}
    for split in ('train', 'valid'):
        groups[f'div2k-{split}-hr'] = [Archive(f'{DIV2K_URL}DIV2K_{split}_HR.zip', 'div2k')]
        groups[f'div2k-{split}-lr'] = [
            Archive(f'{DIV2K_URL}DIV2K_{split}_LR_bicubic_X{s}.zip', 'div2k') for s in (2, 3, 4)]
    return groups


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: str) -> None:
    """ValueError unless the archive is whole: its published size and SHA-256 where there are
    some (PUBLISHED), else its own checks (every zip member's CRC-32; every tar member read
    to its recorded size, and a PNG member's chunk CRC-32s: a tar has no checksum of its
    data)."""
    name = os.path.basename(path)
    again = "; delete it to download it again"
    if name in PUBLISHED:
        size, digest = PUBLISHED[name]
        got = sha256_of(path)
        if os.path.getsize(path) != size or got != digest:
            raise ValueError(f"{path}: {os.path.getsize(path)} bytes, SHA-256 {got}; the "
                             f"published archive has {size} bytes, SHA-256 {digest} "
                             f"({PUBLISHED_SOURCE}){again}")
        return
    try:
        if path.endswith('.zip'):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC-32")
        else:
            with tarfile.open(path) as t:
                for member in t:
                    if member.isfile():
                        data = t.extractfile(member).read()
                        if len(data) != member.size:
                            raise ValueError(f"member {member.name} is cut short")
                        if member.name.lower().endswith('.png'):  # its chunks' CRC-32s
                            try:
                                with Image.open(io.BytesIO(data)) as img:
                                    img.verify()
                            except Exception as e:  # PIL raises many kinds here
                                raise ValueError(f"member {member.name}: {e}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path} is damaged ({e}){again}") from None


def download(url: str, target: str, timeout: float, quiet: bool) -> None:
    """Downloads url to target, resuming from target + '.part'."""
    part = target + '.part'
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part file is already whole
            os.replace(part, target)
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: start again
        total = response.headers.get('Content-Length')
        total = int(total) + have if total is not None else None
        with open(part, 'ab' if have else 'wb') as f, \
                tqdm(total=total, initial=have, unit='B', unit_scale=True,
                     desc=os.path.basename(target), disable=quiet) as bar:
            for block in iter(lambda: response.read(CHUNK), b''):
                f.write(block)
                bar.update(len(block))
    os.replace(part, target)


def unpack(archive: str, dest: str) -> List[str]:
    """Extracts a .zip or .tar into dest, merging folders that already exist (the LR archives
    of one split share DIV2K_<split>_LR_bicubic/). Returns the top-level names it placed."""
    os.makedirs(dest, exist_ok=True)
    staging = tempfile.mkdtemp(dir=dest, prefix='.unpack-')
    try:
        if archive.endswith('.zip'):
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter='data')
        placed = sorted(os.listdir(staging))
        for name in placed:
            merge(os.path.join(staging, name), os.path.join(dest, name))
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def merge(src: str, dst: str) -> None:
    """Moves src to dst; folders are merged file by file, existing files kept."""
    if os.path.isdir(src) and os.path.isdir(dst):
        for name in os.listdir(src):
            merge(os.path.join(src, name), os.path.join(dst, name))
    elif not os.path.exists(dst):
        shutil.move(src, dst)


def fetch(names: List[str], root: str, timeout: float = 60, quiet: bool = False) -> List[str]:
    """Downloads (or reuses) and unpacks the archives of the named groups under root.

    Returns the list of problems (unreachable sources); ValueError for an archive that is not
    whole (check_archive).
    """
    archives_dir = os.path.join(root, '_archives')
    os.makedirs(archives_dir, exist_ok=True)
    problems = []
    for name in names:
        for archive in sources()[name]:
            filename = archive.url.rsplit('/', 1)[1]
            path = os.path.join(archives_dir, filename)
            if not os.path.exists(path):
                try:
                    download(archive.url, path, timeout, quiet)
                except (urllib.error.URLError, OSError) as e:
                    problems.append(f"{archive.url}: unreachable ({getattr(e, 'reason', e)}); "
                                    f"download it by hand into {archives_dir}/ and re-run")
                    continue
            check_archive(path)
            placed = unpack(path, os.path.join(root, archive.dest))
            if not quiet:
                print(f"{filename}: unpacked {', '.join(placed)} into "
                      f"{os.path.join(root, archive.dest)}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    groups = sources()
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--root', default='load', help='data root (default: %(default)s)')
    parser.add_argument('--only', nargs='+', choices=sorted(groups), default=sorted(groups),
                        help='groups to get (default: all)')
    parser.add_argument('--timeout', type=number(float, 0, above=True), default=60,
                        help='seconds before a silent connection is given up (default: 60)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)

    def body() -> int:
        problems = fetch(args.only, args.root, args.timeout, args.quiet)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
