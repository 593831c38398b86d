"""report.html rendered by a real browser: not blank, self-contained, key numbers visible."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by .ci/run)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_is_self_contained(finished_run):
    html = (finished_run / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no external requests
    assert html.index('id="verdict"') < html.index('id="utility"') < html.index('id="attacks-all"')


def test_report_renders_in_chromium(finished_run, tmp_path):
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1800", (finished_run / "report.html").as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # not a blank page
    assert (np.abs(pixels - pixels.mean(axis=(0, 1))).sum(axis=2) > 0.3).mean() > 0.01

    text = _chromium(tmp_path, "--dump-dom", (finished_run / "report.html").as_uri()).stdout
    report = json.loads((finished_run / "report.json").read_text())
    assert "Gate " + {"pass": "PASSED", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}[report["gate"]["verdict"]] in text
    assert f"{100 * report['utility']['student']['test_accuracy']:.1f}%" in text
    for attack in report["attacks"]:
        assert f"{attack['auc']:.3f}" in text
    assert text.count("data:image/png;base64,") >= 7  # one ROC plot per attack, inlined
