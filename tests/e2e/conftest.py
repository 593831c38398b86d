"""End-to-end runs (the CLI or the whole pipeline, several models trained per test).

Everything collected here is marked ``slow``: ``pytest -m "not slow"`` is the fast loop
(see docs/contributing.md), ``pytest`` (``make test``) runs it all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
