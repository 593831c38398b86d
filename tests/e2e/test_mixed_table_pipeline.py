"""A user's one mixed-type table (string categories, blanks, booleans, a string label) runs
with only ``[run]`` and ``[data]`` (plus tiny models), and the deploy bundle reproduces the
report's student accuracy on the raw test rows, including a category it never saw."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from distillguard import load_bundle
from distillguard.config import load_spec
from distillguard.data.sources import split_record
from tests.conftest import TINY_MODELS, run_cli


def _table(n: int = 900, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n)
    frame = pd.DataFrame({"age": rng.integers(18, 90, n).astype(float), "city": city,
                          "insured": rng.choice(["yes", "no"], n), "income": rng.lognormal(3, 1, n)})
    score = (frame["age"] - 50) / 20 + (frame["city"] == "paris") * 1.0 + (frame["insured"] == "yes") * 0.5
    frame["outcome"] = np.where(score + rng.normal(0, 0.5, n) > 0.3, "readmitted", "home")
    frame.loc[rng.random(n) < 0.08, "age"] = np.nan
    frame.loc[rng.random(n) < 0.05, "city"] = None
    return frame


def test_mixed_table_runs_and_the_bundle_reproduces_the_student_accuracy(tmp_path):
    table = _table()
    table.to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "spec.toml").write_text(
        '[run]\nname = "mixed"\n[data]\ntable = "patients.csv"\nlabel = "outcome"\n' + TINY_MODELS)
    # The split depends on the labels and the seed only: plant a city in a few member and test rows.
    planned = split_record(load_spec(tmp_path / "spec.toml").data, seed=0)["rows"]
    table.loc[planned["members"][:5] + planned["test"][:5], "city"] = "ajaccio"
    table.to_csv(tmp_path / "patients.csv", index=False)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out"
    report = json.loads((run / "report.json").read_text())
    assert report["data_split"]["sizes"] == {"members": 225, "nonmembers": 225, "transfer": 315, "test": 135}
    assert report["data_split"]["stratified"] is True and "EVALUATION SET-UP" in report["data_split"]["note"]
    split = json.loads((run / "teacher" / "data_split.json").read_text())  # the rows, owner-only
    assert split["rows"] == planned
    assert os.stat(run / "teacher").st_mode & 0o077 == 0

    bundle = load_bundle(run / "deploy")
    assert bundle.feature_names_ == ["age", "city", "insured", "income"]
    assert bundle.feature_types_ == {"age": "numeric", "city": "categorical", "insured": "boolean", "income": "numeric"}
    deploy_text = (run / "deploy" / "config.json").read_text()
    transfer_cities = set(table.iloc[split["rows"]["transfer"]]["city"].dropna())
    assert "ajaccio" not in transfer_cities and "ajaccio" not in deploy_text  # only member and test rows have it
    test = table.iloc[split["rows"]["test"]]
    assert (test["city"] == "ajaccio").any() and test["age"].isna().any()  # unseen category and blanks
    raw = test.drop(columns=["outcome"])
    accuracy = float((bundle.predict(raw) == test["outcome"].to_numpy()).mean())
    assert accuracy == report["utility"]["student"]["test_accuracy"]
    assert 0.6 < accuracy <= 1.0
    rows = raw.head(3).to_dict(orient="records")  # raw rows as dicts, as a service receives them
    np.testing.assert_allclose(bundle.predict_proba(rows), bundle.predict_proba(raw.head(3)))

    # per-record risk: the table in the owner-only audit folder, counts and classes in the report
    risk = pd.read_parquet(run / "audit" / "record_risk.parquet")
    assert len(risk) == 2 * report["populations"]["all"]["n_members"]
    assert set(risk["class"]) <= {"home", "readmitted"} and risk.filter(like=":percentile").max().max() <= 100
    student = next(r for r in report["record_risk"] if r["target"] == "student")
    assert 0 <= student["members_at_risk"] <= student["n_members"] and student["riskiest_classes"]
    assert "ajaccio" not in (run / "report.json").read_text()
    result = run_cli("export", "spec.toml", "--run-dir", "out", "--destroy-teacher", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (run / "audit" / "record_risk.parquet").exists() and not (run / "teacher").exists()
