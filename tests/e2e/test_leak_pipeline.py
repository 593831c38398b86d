"""The leak guard in the pipeline: copies of member rows in the transfer set are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_MODELS, csv_spec_text, run_cli


@pytest.mark.parametrize("noise", [0.0, 1e-4])
def test_transfer_with_member_copies_is_refused(tmp_path, csv_splits, noise):
    members = pd.read_csv(csv_splits["members"]).drop(columns=["y"])
    transfer = pd.read_csv(csv_splits["transfer"])
    copies = members.iloc[:20] + np.random.default_rng(0).normal(0, noise, size=(20, members.shape[1]))
    pd.concat([transfer, copies], ignore_index=True).to_csv(csv_splits["transfer"], index=False)
    (tmp_path / "spec.toml").write_text(csv_spec_text(extra=TINY_MODELS))
    result = run_cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(line) == 1 and line[0].startswith("error: ") and "overlap" in line[0] and "transfer.csv" in line[0]
    assert "20" in line[0] and "600" in line[0]  # the count, and the first flagged row (rows 600..619 are the copies)
    assert not (tmp_path / "run" / "student").exists() and not (tmp_path / "run" / "softlabels").exists()


def test_drop_policy_removes_the_copies_and_records_them(tmp_path, csv_splits):
    import distillguard

    members = pd.read_csv(csv_splits["members"]).drop(columns=["y"])
    transfer = pd.read_csv(csv_splits["transfer"])
    pd.concat([transfer, members.iloc[:20]], ignore_index=True).to_csv(csv_splits["transfer"], index=False)
    text = csv_spec_text(extra=TINY_MODELS).replace('label = "y"', 'label = "y"\nleak_policy = "drop"')
    (tmp_path / "spec.toml").write_text(text.replace("shadows = 8\ncanaries = 16", "shadows = 0\ncanaries = 0\nattacks = [\"loss\"]")
                                        + '[gate]\nattack = "loss"\n')
    distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run")
    manifest = distillguard.runs.read_json(tmp_path / "run" / "manifest.json")
    # 620 rows, 20 copies dropped by the guard, then the defended default labels the 70 % farthest from the members
    assert manifest["stages"]["label"]["n_records"] == round(0.7 * 600)
    assert manifest["stages"]["label"]["leak_guard"] == {"policy": "drop", "flagged": 20, "dropped": 20}
