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


MEASURE = """<pre id="measured"></pre><script>
const figures = [...document.querySelectorAll('.plots figure')].map(f => {
  const img = f.querySelector('img'), box = img.getBoundingClientRect();
  return {caption: f.querySelector('figcaption').textContent, gate: f.classList.contains('gate'),
          width: box.width, height: box.height, left: box.left + scrollX, top: box.top + scrollY,
          natural: img.naturalWidth};
});
const first = [...document.querySelectorAll('#attacks-all tr')].slice(1, 2).map(r => r.cells[0].textContent);
const heads = [...document.querySelectorAll('#attacks-all th')].map(h => h.textContent);
document.getElementById('measured').textContent = JSON.stringify({figures, first, heads, page: document.body.scrollHeight});
</script></body>"""


def test_plots_are_sized_to_read_and_the_gate_attack_comes_first(finished_run, tmp_path):
    """The browser lays the report out: plots at least 440 px wide, near their natural size, the gate's
    attack first and marked, no all-n/a column; the screenshot shows both models' colours in the first plot."""
    page = tmp_path / "report.html"
    page.write_text((finished_run / "report.html").read_text().replace("</body>", MEASURE))
    dom = _chromium(tmp_path, "--dump-dom", "--window-size=1200,900", page.as_uri()).stdout
    measured = json.loads(re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    report = json.loads((finished_run / "report.json").read_text())
    gate = report["gate"]["attack"]
    figures = measured["figures"]
    attacks = {a["attack"] for a in report["attacks"]}  # one ROC plot per attack
    assert len(figures) == len(attacks) and figures[0]["caption"].startswith(gate) and figures[0]["gate"]
    assert not any(f["gate"] for f in figures[1:])
    for f in figures:
        assert f["width"] >= 440 and f["height"] >= 330, f  # ~260 px before: legends unreadable
        assert f["width"] >= 0.75 * f["natural"]  # shown near natural size, so 11-pt legends stay legible
    assert measured["first"][0].startswith(gate) and "gate" in measured["first"][0]
    assert "TPR@0.1%" not in measured["heads"]  # 135 nonmembers: n/a in every row, so the column is dropped
    assert "TPR@1%" in measured["heads"]

    shot = tmp_path / "full.png"
    _chromium(tmp_path, f"--screenshot={shot}", f"--window-size=1200,{int(measured['page']) + 100}", page.as_uri())
    pixels = imread(shot)[..., :3]
    first = figures[0]
    crop = pixels[int(first["top"]):int(first["top"] + first["height"]), int(first["left"]):int(first["left"] + first["width"])]
    blue, orange = np.array([0, 114, 178]) / 255, np.array([213, 94, 0]) / 255  # teacher, student
    for colour in (blue, orange):
        assert (np.abs(crop - colour).sum(axis=2) < 0.15).sum() > 200  # both models' lines are drawn and visible
