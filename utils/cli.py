"""What every script's command line shares: the one `error:` line and exit status, and the
flags demo.py, test.py, train_liif.py, the viewer and the scripts have in common."""
import argparse
import errno
import math
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple, Type

# Exit statuses: bad input and other errors; a stop by Ctrl-C, SIGTERM or SIGHUP.
ERROR_STATUS = 2
INTERRUPTED_STATUS = 130
STOP_SIGNALS = ('SIGTERM', 'SIGHUP')  # a job scheduler's `kill`, a closed terminal
# PyTorch re-raises a data-loader worker's exception with the worker's traceback in its text.
WORKER = re.compile(r'Caught \w+ in DataLoader worker process (\d+)')


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces as single spaces (parser messages)."""
    return ' '.join(text.split())


def error_line(e: BaseException) -> str:
    """The message of `e` on one line: a KeyError's key message unquoted, and for an error
    raised in a data-loader worker, the worker's own message (not its traceback)."""
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, OSError) and e.strerror:  # not "[Errno 28] ..."
        text = e.strerror + (f": {e.filename}" if e.filename else '')
    text = str(text)
    worker = WORKER.search(text)
    if worker and 'Original Traceback' in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = f"{re.sub(r'^[A-Za-z_.]+(Error|Exception): ', '', last.strip())} (in data-loader " \
               f"worker {worker.group(1)})"
    return one_line(text) if '\n' in text else text


def _stop(signum, frame):
    raise KeyboardInterrupt


def run_main(body: Callable[[], int], interrupted: Any = 'interrupted',
             statuses: Optional[Dict[Type[BaseException], int]] = None) -> int:
    """Runs a script's body and returns its exit status: a bad input or another expected
    error (OSError, ValueError, KeyError) is one `error: ...` line and ERROR_STATUS, or the
    status `statuses` gives its type; Ctrl-C, SIGTERM and SIGHUP are `error: <interrupted>`
    (a string, or a function giving it then) and INTERRUPTED_STATUS (the body's `finally` clauses and atomic writes clean up first).
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), _stop)
    try:
        return body()
    except (OSError, ValueError, KeyError, *(statuses or {})) as e:
        status = next((s for kind, s in (statuses or {}).items() if isinstance(e, kind)),
                      ERROR_STATUS)
        print(f"error: {error_line(e)}", file=sys.stderr)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            # A full disk: the log writers' exit handlers and threads would each print a
            # traceback failing to flush; every file was written whole or not at all.
            sys.stderr.flush()
            os._exit(status)
        return status
    except KeyboardInterrupt:
        print(f"error: {interrupted() if callable(interrupted) else interrupted}",
              file=sys.stderr)
        return INTERRUPTED_STATUS
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are the one `error: ...` line and ERROR_STATUS of run_main
    (not argparse's usage block), with the scripts' help layout (their docstring as is)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        print(f"error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(ERROR_STATUS)


def number(kind: Callable[[str], Any] = float, low: Optional[float] = None,
           high: Optional[float] = None, above: bool = False) -> Callable[[str], Any]:
    """An argparse type for a finite number of `kind` (int or float) within [low, high]
    (low excluded when `above`): `type=number(int, 1)`, `type=number(float, 0, above=True)`.
    Anything else is an error naming the value and the rule."""
    rule = 'an integer' if kind is int else 'a finite number'
    if low is not None:
        rule += f" {'>' if above else '>='} {low:g}"
    if high is not None:
        rule += f"{' and' if low is not None else ''} <= {high:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value) or (low is not None and (
                value < low or (above and value == low))) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got '{text}'")
        return value
    parse.__name__ = rule  # argparse names the type in some messages
    return parse


MEMORY_UNITS = {'': 1, 'B': 1, 'K': 2 ** 10, 'KB': 2 ** 10, 'M': 2 ** 20, 'MB': 2 ** 20,
                'G': 2 ** 30, 'GB': 2 ** 30}


def memory_size(text: str) -> int:
    """Bytes from a size such as 512MB, 2GB or 1e9 (an argparse type: bad input is an
    error line)."""
    value = text.strip().upper()
    number = value.rstrip('KMGB')
    try:
        size = float(number) * MEMORY_UNITS[value[len(number):]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"bad memory size '{text}'; e.g. 512MB or 2GB")
    if not math.isfinite(size):
        raise argparse.ArgumentTypeError(f"memory size must be finite, got '{text}'")
    if size < 1:
        raise argparse.ArgumentTypeError(f"memory size must be at least 1 byte, got '{text}'")
    return int(size)


# Flags several scripts share, as (names, argparse keywords):
#     for names, spec in (DEVICE, DATA_ROOT): parser.add_argument(*names, **spec)
Flag = Tuple[Tuple[str, ...], Dict[str, Any]]
DEVICE: Flag = (('--device',), dict(default='auto',
                                    help='auto, cpu, cuda or cuda:N (default: %(default)s)'))
DATA_ROOT: Flag = (('--data-root',), dict(
    default=os.environ.get('LIIF_DATA_ROOT'),
    help='folder that replaces ./load in config paths (default: $LIIF_DATA_ROOT, else ./load '
         'as written)'))
NUM_WORKERS: Flag = (('--num-workers',), dict(
    type=number(int, 0), default=None,
    help='data loading processes (default: 4 on CUDA, 0 on CPU)'))
OVERRIDES: Flag = (('--set',), dict(
    dest='overrides', nargs='*', default=[], metavar='KEY=VALUE',
    help='config overrides, parsed as YAML, e.g. eval_bsize=10000 or '
         'train_dataset.batch_size=8'))


def num_workers(args: argparse.Namespace, device_type: str) -> int:
    """--num-workers, checked, or its default for the device."""
    if args.num_workers is None:
        return 4 if device_type == 'cuda' else 0
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    return args.num_workers
