"""Atomic file writes: an output file appears only when it is complete."""
import os
import stat
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional


@contextmanager
def atomic_path(path: str, suffix: Optional[str] = None) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it to `path` when the block succeeds,
    and removes it when the block fails, so `path` is never half-written.

    The temporary name keeps `path`'s extension (or `suffix`) so that writers that pick the
    format from the extension still work.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-',
                               suffix=os.path.splitext(path)[1] if suffix is None else suffix)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600): a replaced file keeps its permissions, a new
        # one gets those a plain open() would give.
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
