"""Device selection: chosen once in a script, then passed down explicitly; precisions; and the
host's memory allocator."""
import ctypes
import sys
from typing import Optional

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = 'auto') -> torch.device:
    """Turns 'auto' | 'cpu' | 'cuda' | 'cuda:N' into a torch.device.

    'auto' picks CUDA when it is available and the CPU otherwise.

    Raises:
        ValueError: unknown name, or CUDA asked for where there is none.
    """
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device '{name}'; expected {DEVICE_CHOICES}") from e
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f"unknown device '{name}'; expected {DEVICE_CHOICES}")
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f"device '{name}' asked for, but CUDA is not available here; "
                             "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device '{name}' asked for, but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device


PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_precision(precision: str) -> None:
    """ValueError unless `precision` is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; expected one of "
                         f"{', '.join(PRECISIONS)}")


def autocast(device: torch.device, precision: str = 'fp32') -> torch.autocast:
    """Autocast context for 'fp32' (off: the float32 reference), 'bf16' or 'fp16'.

    Scripts wrap only the decoder (the query) in it: matrix products run in 16 bits while
    coordinates, nearest-code lookup and ensemble weights stay float32. The encoder stays
    float32: on the CPU we measured, a bf16 encoder was hardly faster and cost most of the
    accuracy (Set5 x2: -0.008 dB against -0.004 dB with a float32 encoder).
    """
    check_precision(precision)
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


# CPU flags of the units that run each 16-bit precision natively (Linux /proc/cpuinfo).
NATIVE_CPU_FLAGS = {'bf16': ('avx512_bf16', 'amx_bf16'), 'fp16': ('avx512_fp16', 'amx_fp16')}


def cpu_flags() -> Optional[set]:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        return None
    return None


def precision_note(device: torch.device, precision: str) -> Optional[str]:
    """A note when `precision` would be emulated on `device` (a CPU without bf16 / fp16
    units runs it several times slower than fp32: a 2304x1728 x2 render took over 15 minutes
    on one), else None."""
    check_precision(precision)
    if device.type != 'cpu' or precision == 'fp32':
        return None
    flags = cpu_flags()
    if flags is None or flags & set(NATIVE_CPU_FLAGS[precision]):
        return None
    return (f"note: this CPU has no {precision} units ({' or '.join(NATIVE_CPU_FLAGS[precision])}"
            f"): {precision} is emulated and runs several times slower than fp32 here; "
            "--precision fp32 is faster")


def print_precision_note(device: torch.device, precision: str, show: bool = True) -> None:
    """precision_note on stderr, if there is one and `show` (a script's --quiet, a worker)."""
    note = precision_note(device, precision)
    if note and show:
        print(note, file=sys.stderr)


M_MMAP_THRESHOLD = -3       # glibc's mallopt parameter
MMAP_THRESHOLD = 16 << 20   # blocks from this size up are mapped, and unmapped when freed


def return_freed_memory() -> None:
    """Makes the C library give large freed blocks (tensors) back to the system at once, so
    that a process's memory follows what it holds (a script's --max-memory). glibc raises
    its mmap threshold after each large block is freed (up to 32 MB), and blocks below the
    threshold come from its heap, which keeps freed memory: encoder tiles of 10-30 MB
    activations grew the process by 1.5x to 2.5x what they held (measured), 1.25x with a
    fixed threshold. Process-wide; a no-op where the C library is not glibc."""
    try:
        ctypes.CDLL('libc.so.6').mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def available_memory() -> Optional[int]:
    """Bytes of memory the system has available (/proc/meminfo's MemAvailable), or None where
    it cannot be read."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
