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
    """Draw progress bars (on stderr by default) while the block runs.

    The live display starts with the first bar, so a command that draws none (or fails
    before one) prints nothing: no stray blank line before an ``error:`` line.
    """
    global _progress
    _progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console or Console(stderr=True), transient=False,
    )
    try:
        yield
    finally:
        if _progress.live.is_started:
            _progress.stop()
        _progress = None


@contextmanager
def task(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar only when :func:`enabled` is active.

    When the block ends the bar's clock stops (it does not run on while later stages
    work), and a bar started without a ``total`` shows what it counted as its total.
    """
    progress = _progress
    if progress is None:
        yield lambda n=1: None
        return
    if not progress.live.is_started:
        progress.start()
    task_id = progress.add_task(description, total=total)
    try:
        yield lambda n=1: progress.advance(task_id, n)
    finally:
        done = next(t for t in progress.tasks if t.id == task_id)
        if done.total is None:
            progress.update(task_id, total=done.completed)
        progress.stop_task(task_id)


def log(message: str) -> None:
    """A one-line status message (shown only with progress on)."""
    if _progress is not None:
        _progress.console.print(message)
