"""Download DIV2K and the SR benchmark sets into load/, in the layout the configs expect.

  load/div2k/DIV2K_{train,valid}_HR/0001.png ...
  load/div2k/DIV2K_{train,valid}_LR_bicubic/X{2,3,4}/0001x2.png ...
  load/benchmark/{Set5,Set14,B100,Urban100}/HR/<name>.png
  load/benchmark/{Set5,Set14,B100,Urban100}/LR_bicubic/X{2,3,4}/<name>x{s}.png

Archives go to load/_archives/ first; an interrupted download resumes from its .part file
(HTTP Range). The publishers give no checksums, so the SHA-256 of every archive is recorded in
load/_archives/SHA256SUMS when it is first downloaded, and a later download or re-run that
does not match it is an error. A source that cannot be reached is reported with its URL, so it
can be fetched by hand into load/_archives/ and this script re-run to unpack it.
CelebA-HQ has no working public link: see the README ("Data") and scripts/resize.py.

Examples:
  python scripts/download_data.py --only benchmark
  python scripts/download_data.py --root load --only div2k-valid-hr div2k-valid-lr
"""
import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Dict, List, NamedTuple, Optional

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import run_main  # noqa: E402

DIV2K_URL = 'https://data.vision.ee.ethz.ch/cvl/DIV2K/'
BENCHMARK_URL = 'https://cv.snu.ac.kr/research/EDSR/benchmark.tar'
CHUNK = 1 << 20


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


def read_sums(path: str) -> Dict[str, str]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {name: digest for digest, name in (line.split() for line in f if line.strip())}


def write_sums(path: str, sums: Dict[str, str]) -> None:
    with open(path + '.tmp', 'w') as f:
        f.writelines(f'{digest}  {name}\n' for name, digest in sorted(sums.items()))
    os.replace(path + '.tmp', path)


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

    Returns the list of problems (unreachable sources); raises on a checksum mismatch.
    """
    archives_dir = os.path.join(root, '_archives')
    os.makedirs(archives_dir, exist_ok=True)
    sums_path = os.path.join(archives_dir, 'SHA256SUMS')
    sums = read_sums(sums_path)
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
            digest = sha256_of(path)
            if filename in sums and sums[filename] != digest:
                raise ValueError(f"{path}: SHA-256 {digest} does not match the recorded "
                                 f"{sums[filename]}; delete the file to download it again")
            sums[filename] = digest
            write_sums(sums_path, sums)
            placed = unpack(path, os.path.join(root, archive.dest))
            if not quiet:
                print(f"{filename}: unpacked {', '.join(placed)} into "
                      f"{os.path.join(root, archive.dest)}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    groups = sources()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='load', help='data root (default: %(default)s)')
    parser.add_argument('--only', nargs='+', choices=sorted(groups), default=sorted(groups),
                        help='groups to get (default: all)')
    parser.add_argument('--timeout', type=float, default=60,
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
