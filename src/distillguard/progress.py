"""Progress bars for long steps: Rich when the CLI turns them on, silent otherwise.

Library code calls :func:`task` around every long loop; only the CLI decides whether
anything is drawn, so the Python API stays quiet inside notebooks and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_progress: Progress | None = None


@contextmanager
def enabled(console: Console | None = None) -> Iterator[None]:
    """Draw progress bars (on stderr by default) while the block runs."""
    global _progress
    _progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console or Console(stderr=True), transient=False,
    )
    try:
        with _progress:
            yield
    finally:
        _progress = None


@contextmanager
def task(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar only when :func:`enabled` is active."""
    if _progress is None:
        yield lambda n=1: None
        return
    task_id = _progress.add_task(description, total=total)
    yield lambda n=1: _progress.advance(task_id, n)


def log(message: str) -> None:
    """A one-line status message (shown only with progress on)."""
    if _progress is not None:
        _progress.console.print(message)
