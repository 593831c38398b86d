"""Bad input through the CLI: exit 2, one `error:` line naming the culprit, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import csv_spec_text

STAGE_OUTPUTS = ("teacher", "softlabels", "student", "audit", "deploy", "report.json")


def _nan(paths):
    frame = pd.read_csv(paths["test"])
    frame.loc[4, "f2"] = np.nan
    frame.to_csv(paths["test"], index=False)


CASES = {
    "unknown spec key": (lambda p: None, "[teacher]\nlayers = 3\n", ["[teacher].layers", "unknown key"]),
    "missing file": (lambda p: p["transfer"].unlink(), "", ["transfer.csv", "not found"]),
    "label column": (lambda p: None, "", ["label column 'target'", "members.csv"]),
    "nan cell": (_nan, "", ["test.csv", "'f2'", "line 6"]),
    "empty file": (lambda p: p["nonmembers"].write_text(""), "", ["nonmembers.csv", "empty"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(tmp_path, csv_splits, case):
    mutate, extra, expected = CASES[case]
    mutate(csv_splits)
    text = csv_spec_text(extra=extra)
    if case == "label column":
        text = text.replace('label = "y"', 'label = "target"')
    (tmp_path / "spec.toml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "distillguard", "run", "spec.toml", "--run-dir", "run"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for part in expected:
        assert part in lines[0]
    for name in STAGE_OUTPUTS:
        assert not (tmp_path / "run" / name).exists()
