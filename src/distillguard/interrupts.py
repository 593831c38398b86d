"""Hold Ctrl-C and SIGTERM off while a file is being written, then deliver them.

A ``KeyboardInterrupt`` raised in the middle of ``torch.save`` is raised inside the
Python callback that PyTorch's zip writer calls from C++: the file is closed while the
writer is still alive, and its destructor later writes the archive's trailer to the
closed file, which aborts the interpreter (``pybind11::error_already_set`` /
``write to closed file``, exit -6 instead of a clean 130). Deferring the signal until
the write and its rename are done makes every checkpoint and artifact write whole, and
the interrupt still stops the run right after it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred() -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM held; if one arrived, act on it when the block ends.

    Only the main thread can install signal handlers (and only it receives signals), so
    elsewhere the block runs unchanged. Nested use holds the signals until the outermost
    block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in _DEFERRED:
        handler = signal.getsignal(signum)
        if handler in (signal.SIG_IGN, None):
            continue  # ignored stays ignored; a handler installed from C stays as it is
        previous[signum] = handler
        signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received[:1]:
        handler = previous[signum]
        if handler is signal.SIG_DFL:
            signal.raise_signal(signum)  # the default action (e.g. terminate on SIGTERM) as if never held
        elif callable(handler):
            handler(signum, None)
