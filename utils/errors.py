"""The one `error:` line a script prints for an exception."""
import re

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
