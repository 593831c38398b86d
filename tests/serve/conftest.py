"""Fixtures of the serve tests (helpers in tests/serve_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_support import make_deploy


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    return make_deploy(tmp_path / "deploy")
