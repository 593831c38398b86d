"""Write a benchmark's results table into its page under docs/results/.

The measured tables of the documentation are written by the scripts that measure them,
so they cannot drift from what the scripts print. A page marks each table with

    <!-- BEGIN: name -->
    ...
    <!-- END: name -->

and :func:`replace_between_markers` swaps what lies between the two lines. The prose
around the markers (the command, the machine, the load, what the numbers mean) is
written by hand and kept. Every benchmark takes ``--no-docs`` to print only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def replace_between_markers(page: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- BEGIN: name -->`` and ``<!-- END: name -->`` in ``page``.

    The page is rewritten atomically (a temp file in the same folder, then a rename), so
    an interrupted benchmark never leaves half a page.

    Raises:
        ValueError: the page lacks either marker, or has them in the wrong order.
    """
    begin, end = f"<!-- BEGIN: {name} -->", f"<!-- END: {name} -->"
    current = page.read_text(encoding="utf-8")
    start, stop = current.find(begin), current.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{page} has no '{begin}' ... '{end}' block; add the two markers where the table goes")
    updated = current[: start + len(begin)] + "\n" + text.strip("\n") + "\n" + current[stop:]
    handle, temp = tempfile.mkstemp(dir=page.parent, prefix=f".{page.name}.", suffix=".tmp")
    try:
        os.chmod(temp, page.stat().st_mode & 0o777)  # mkstemp makes it owner-only; keep the page's mode
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(updated)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, page)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def add_docs_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-docs``: print the tables without writing them into docs/results/."""
    parser.add_argument("--no-docs", action="store_true",
                        help="print the tables only; do not write them into docs/results/")


def publish(args: argparse.Namespace, page: str, name: str, text: str) -> None:
    """Write ``text`` into docs/results/``page`` at the marker ``name``, unless ``--no-docs``."""
    if getattr(args, "no_docs", False):
        return
    replace_between_markers(RESULTS / page, name, text)
    print(f"(written into docs/results/{page}, block '{name}')")
