"""A training run's folder held by one process at a time, and cleared of what killed saves
left behind."""
import glob
import os
from typing import IO, Optional

try:
    import fcntl
except ImportError:  # not on Windows: no lock there
    fcntl = None

LOCK_NAME = '.lock'
TMP_PATTERN = '.tmp-*'


def lock_run_folder(run_dir: str) -> Optional[IO]:
    """Takes the run folder's lock (released when the process ends) and removes the temporary
    files of saves killed before they completed. Returns the open lock file (keep it).

    Raises:
        ValueError: another process holds the lock (two runs in one folder would overwrite
            each other's checkpoints).
    """
    if fcntl is None:
        return None
    handle = open(os.path.join(run_dir, LOCK_NAME), 'a')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"{run_dir} is in use by another training process (it holds "
                         f"{os.path.join(run_dir, LOCK_NAME)}); wait for it to end, or "
                         "give this run another --name") from None
    for stale in glob.glob(os.path.join(glob.escape(run_dir), TMP_PATTERN)):
        os.remove(stale)
    return handle
