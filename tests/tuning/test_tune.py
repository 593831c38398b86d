"""distillguard tune: Pareto maths, the budgeted successive halving, and an end-to-end CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import csv_spec_text, run_cli, write_csv_splits
from distillguard.config import load_spec, parse_spec
from distillguard.tuning import search
from distillguard.tuning.pareto import Point, choose, pareto_front
from distillguard.tuning.space import Candidate, default_space
from distillguard.tuning.workspace import Workspace


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    points = [Point(0.90, 0.20, 0.80), Point(0.88, 0.05, 0.60), Point(0.85, 0.05, 0.65),  # 2 is dominated by 1
              Point(0.70, 0.01, 0.52), Point(0.89, 0.30, 0.90)]                           # 4 is dominated by 0
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([Point(0.8, 0.1, 0.6)] * 2) == [0, 1]  # equal points do not dominate each other


def test_choice_is_the_least_leaky_point_above_the_accuracy_bar() -> None:
    points = [Point(0.90, 0.20, 0.80), Point(0.88, 0.05, 0.60), Point(0.70, 0.01, 0.52)]
    assert choose(points, min_accuracy=0.87) == (1, True)
    assert choose(points, min_accuracy=0.60) == (2, True)
    assert choose(points, min_accuracy=0.95) == (0, False)  # nobody qualifies: the most accurate, flagged
    # AUC leads: a noisy 0.7-point TPR edge does not beat an AUC at chance (the digits case).
    digits = [Point(0.938, 0.0133, 0.596), Point(0.938, 0.0200, 0.528)]
    assert choose(digits, min_accuracy=0.918) == (1, True)


def test_default_space_is_valid_specs_and_starts_with_the_users_own() -> None:
    spec = parse_spec({}, base_dir=Path("."))
    space = default_space(spec, n_transfer=3000)
    assert space[0].overrides == {} and len({c.name for c in space}) == len(space) >= 8
    for candidate in space:
        candidate.apply(spec)  # every candidate validates as a spec
    names = [c.name for c in space]
    assert names[2].startswith("Split-AI") and any(n.startswith("HAMP") for n in names)
    # the default spec is the defended recipe: "hard labels only" and plain KD take its other parts out again
    assert names[1] == "hard labels only" and names[-1] == "plain KD (soft labels)"
    for name in ("hard labels only", "plain KD (soft labels)"):
        undone = next(c for c in space if c.name == name).apply(spec)
        assert undone.teacher.label_smoothing == 0.0 and undone.transfer.is_identity(), name
    hamp = next(c for c in space if c.name.startswith("HAMP")).apply(spec)
    assert hamp.teacher.label_smoothing == 0.0 and hamp.teacher.hamp is not None
    soft = parse_spec({"softlabels": {"labels": "soft"}}, base_dir=Path("."))
    soft_space = default_space(soft, n_transfer=3000)
    soft_names = [c.name for c in soft_space]
    assert soft_names[1] == "hard labels only" and "plain KD (soft labels)" not in soft_names
    assert soft_space[1].overrides == {"softlabels": {"labels": "hard"}}  # nothing to undo in a plain-KD spec
    # where a teacher defense cannot apply, it is not offered (and the rest still validate)
    pate = parse_spec({"privacy": {"mechanism": "pate"}, "softlabels": {}}, base_dir=Path("."))
    assert not any(c.name.startswith("Split-AI") for c in default_space(pate, n_transfer=3000))
    dp = parse_spec({"privacy": {"mechanism": "dp-sgd", "epsilon": 8.0}}, base_dir=Path("."))
    assert not any(c.name.startswith(("Split-AI", "HAMP")) for c in default_space(dp, n_transfer=3000))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_search_halves_promotes_the_best_and_never_overruns_its_budget(tmp_path, monkeypatch) -> None:
    """Candidate cost is proportional to shadows (10 s per shadow here); leakage is made up."""
    clock = FakeClock()
    leak = {f"c{i}": 0.5 - 0.03 * i for i in range(8)}  # later candidates leak less ...
    acc = {f"c{i}": 0.9 - (0.05 if i >= 6 else 0.0) for i in range(8)}  # ... but c6, c7 lose accuracy
    calls: list[tuple[str, int]] = []

    def fake_evaluate(candidate, spec, work, *, folder, shadows, fpr):
        calls.append((candidate.name, shadows))
        clock.now += 10.0 * shadows
        return search.Evaluation(name=candidate.name, overrides=candidate.overrides, shadows=shadows,
                                 seconds=10.0 * shadows, accuracy=acc[candidate.name], accuracy_ci=[0, 1], fidelity=1.0,
                                 attack="lira_online", auc=0.5 + leak[candidate.name] / 2,
                                 auc_ci=[0.48 + leak[candidate.name] / 2, 0.52 + leak[candidate.name] / 2],
                                 tpr=leak[candidate.name])

    monkeypatch.setattr(search.time, "monotonic", clock)
    monkeypatch.setattr(search, "_evaluate", fake_evaluate)
    monkeypatch.setattr(search, "prepare_workspace", lambda spec, folder: Workspace({}, None, None, 0.9, 100))
    spec = parse_spec({"audit": {"shadows": 16}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(8)]

    # 8 candidates × 8 shadows × 10 s = 640 s for rung 0; the best third (3) at 16 shadows = 480 s more.
    result = search.tune(spec, folder=tmp_path / "t", budget_minutes=20, space=space)
    assert [s for _, s in calls] == [8] * 8 + [16] * 3
    assert [n for n, s in calls if s == 16] == ["c5", "c4", "c3"]  # least leaky among those above the bar
    assert result.chosen.name == "c5" and result.chosen.shadows == 16 and result.met_target
    assert result.elapsed_seconds <= result.budget_seconds

    # A budget that holds only part of rung 0: the search stops before overrunning, and says what it skipped.
    calls.clear()
    clock.now = 0.0
    result = search.tune(spec, folder=tmp_path / "t2", budget_minutes=5, space=space)
    assert result.elapsed_seconds <= 300 and len(calls) == 3 and len(result.skipped) == 5 + 1
    chosen_spec = load_spec(result.best_spec)
    assert chosen_spec.distill.temperature == 1.0 + int(result.chosen.name[1:])
    assert json.loads((tmp_path / "t2" / "tune.json").read_text())["chosen"]["name"] == result.chosen.name


@pytest.mark.slow
def test_tune_on_csv_splits_never_reads_the_test_split(tmp_path) -> None:
    write_csv_splits(tmp_path)
    garbage = b"\x00\xff not a csv file \x00"
    (tmp_path / "test.csv").write_bytes(garbage)  # reading it would be a DataError
    (tmp_path / "spec.toml").write_text(csv_spec_text(extra=(
        "[teacher]\nhidden = [64]\nepochs = 15\n[student]\nhidden = [32]\nepochs = 15\n"
        "[audit]\nbootstrap = 0\nshadows = 4\ncanaries = 8\n")))
    # about 1 s per tiny candidate (no plots are drawn for candidates): 12 s holds some of the 15, not all
    result = run_cli("tune", "spec.toml", "--budget-minutes", "0.2", "--out", "t", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "chosen:" in result.stdout
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    first = summary["evaluations"][0]
    assert first["name"] == "your spec" and 0.0 <= first["auc"] <= 1.0 and first["shadows"] == 4
    assert summary["skipped"]  # the budget stops the search
    assert summary["elapsed_seconds"] <= 12 + max(e["seconds"] for e in summary["evaluations"])
    assert (tmp_path / "test.csv").read_bytes() == garbage
    assert not (tmp_path / "t" / "private").exists()  # data copies and candidate runs are removed
    best = load_spec(tmp_path / "t" / "best.toml")
    assert best.data.test == (tmp_path / "test.csv").resolve()  # the chosen spec runs on the user's own splits
    page = (tmp_path / "t" / "report.html").read_text()
    assert "Defense search" in page and "data:image/png;base64," in page
    assert (tmp_path / "t" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_shadow_teacher_cache_gives_the_same_audit_and_is_shared_downstream(tmp_path) -> None:
    import distillguard
    from distillguard.audit.shadow_cache import shadow_teacher_cache

    base = {"run": {"name": "c"}, "data": {"builtin": "purchase-synth", "sizes": {"members": 120, "nonmembers": 120,
                                                                                  "transfer": 300, "test": 150},
                                          "synth": {"features": 40, "classes": 5, "clusters": 2}},
            "teacher": {"hidden": [32], "epochs": 8}, "student": {"hidden": [16], "epochs": 8},
            "audit": {"shadows": 4, "canaries": 8, "bootstrap": 0}}
    cache = tmp_path / "cache"
    with shadow_teacher_cache(cache):
        trained = distillguard.run(parse_spec(base, base_dir=tmp_path), run_dir=tmp_path / "a").report
        assert len(list(cache.glob("*.safetensors"))) == 1
        reused = distillguard.run(parse_spec(base, base_dir=tmp_path), run_dir=tmp_path / "b").report
        student = {**base["student"], "hidden": [8]}  # downstream of the teacher (plain KD would unsmooth it)
        knob = distillguard.run(parse_spec({**base, "student": student}, base_dir=tmp_path),
                                run_dir=tmp_path / "k").report
        assert len(list(cache.glob("*.safetensors"))) == 1  # a downstream knob shares the shadow teachers
    assert trained["attacks"] == reused["attacks"]  # loading gives exactly what training gave
    teacher_rows = lambda r: [a for a in r["attacks"] if a["target"] == "teacher"]  # noqa: E731
    assert teacher_rows(knob) == teacher_rows(trained) and knob["attacks"] != trained["attacks"]


def test_shadow_cache_key_changes_with_any_input() -> None:
    from distillguard.audit.shadow_cache import cache_key

    X = np.arange(12.0).reshape(4, 3)
    base = cache_key(arrays={"pool.X": X}, params={"teacher": {"epochs": 8}})
    assert base == cache_key(arrays={"pool.X": X.copy()}, params={"teacher": {"epochs": 8}})
    assert base != cache_key(arrays={"pool.X": X}, params={"teacher": {"epochs": 9}})
    changed = X.copy()
    changed[2, 1] += 1e-9
    assert base != cache_key(arrays={"pool.X": changed}, params={"teacher": {"epochs": 8}})
    assert base != cache_key(arrays={"pool.X": X.astype(np.float32)}, params={"teacher": {"epochs": 8}})


def _fake_search(monkeypatch, tmp_path, *, prepare_seconds: float, cost):
    """A search on a fake clock: preparing takes ``prepare_seconds``, candidate i costs ``cost(i, shadows)``."""
    clock = FakeClock()
    calls: list[tuple[str, int]] = []

    def fake_prepare(spec, folder):
        folder.mkdir(parents=True)
        (folder / "members.npz").write_bytes(b"private copy")
        clock.now += prepare_seconds
        return Workspace({}, None, None, 0.9, 100)

    def fake_evaluate(candidate, spec, work, *, folder, shadows, fpr):
        seconds = cost(len(calls), shadows)
        calls.append((candidate.name, shadows))
        clock.now += seconds
        return search.Evaluation(name=candidate.name, overrides=candidate.overrides, shadows=shadows, seconds=seconds,
                                 accuracy=0.9, accuracy_ci=[0, 1], fidelity=1.0, attack="lira_online", auc=0.6,
                                 auc_ci=[0.55, 0.65], tpr=0.1)

    monkeypatch.setattr(search.time, "monotonic", clock)
    monkeypatch.setattr(search, "_evaluate", fake_evaluate)
    monkeypatch.setattr(search, "prepare_workspace", fake_prepare)
    return calls


def test_budget_shorter_than_one_evaluation_stops_at_once_and_keeps_nothing(tmp_path, monkeypatch) -> None:
    from distillguard.errors import ConfigError

    calls = _fake_search(monkeypatch, tmp_path, prepare_seconds=4.0, cost=lambda i, s: 10.0 * s)
    spec = parse_spec({"audit": {"shadows": 16}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(8)]
    with pytest.raises(ConfigError, match=r"budget of 0\.1 min \(6 s\) is shorter than one evaluation.*"
                                          r"--budget-minutes 0\.3 or more for one candidate"):
        search.tune(spec, folder=tmp_path / "t", budget_minutes=0.1, space=space)
    assert calls == [] and not (tmp_path / "t" / "private").exists()
    with pytest.raises(ConfigError, match=r"--budget-minutes is 0; expected a positive number"):
        search.tune(spec, folder=tmp_path / "t", budget_minutes=0, space=space)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_interrupt_or_error_removes_the_private_copies(tmp_path, monkeypatch, failure) -> None:
    def cost(i, shadows):
        if i == 1:
            raise failure()
        return 1.0

    _fake_search(monkeypatch, tmp_path, prepare_seconds=0.0, cost=cost)
    spec = parse_spec({"audit": {"shadows": 16}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(3)]
    with pytest.raises(failure):
        search.tune(spec, folder=tmp_path / "t", budget_minutes=20, space=space)
    assert not (tmp_path / "t" / "private").exists()
    _fake_search(monkeypatch, tmp_path, prepare_seconds=0.0, cost=cost)
    with pytest.raises(failure):
        search.tune(spec, folder=tmp_path / "k", budget_minutes=20, space=space, keep_runs=True)
    assert (tmp_path / "k" / "private" / "data" / "members.npz").is_file()  # --keep-runs keeps them


def test_one_slow_candidate_does_not_cut_the_search_short(tmp_path, monkeypatch) -> None:
    """The issue-16 case: the first candidate (which also trains the shadow teachers) takes 10× the others.

    500 s + 12 × 50 s fits in 20 minutes. With the slowest evaluation as the estimate the search
    would stop after 5 of 13; the median per-shadow cost lets all 13 first-rung candidates run.
    """
    calls = _fake_search(monkeypatch, tmp_path, prepare_seconds=0.0,
                         cost=lambda i, shadows: (62.5 if i == 0 else 6.25) * shadows)
    spec = parse_spec({"audit": {"shadows": 16}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(13)]
    result = search.tune(spec, folder=tmp_path / "t", budget_minutes=20, space=space)
    first_rung = [name for name, shadows in calls if shadows == 8]
    assert len(first_rung) == 13 and not [s for s in result.skipped if "full audit" not in s]
    assert result.elapsed_seconds <= result.budget_seconds


def test_budget_estimate_is_the_median_per_shadow_times_a_margin() -> None:
    clock = search._Budget(started=0.0, seconds=1000.0)
    clock.first_estimate = 30.0
    assert clock.estimate([], 8) == 30.0

    def done(seconds: float, shadows: int = 8) -> search.Evaluation:
        return search.Evaluation(name="c", overrides={}, shadows=shadows, seconds=seconds, accuracy=0.9,
                                 accuracy_ci=[0, 1], fidelity=1.0, attack="lira_online", auc=0.6, auc_ci=[0.5, 0.7],
                                 tpr=0.1)

    # one evaluation 10× slower under load moves the estimate not at all: the median is 40 s for 8 shadows
    runs = [done(400.0), done(40.0), done(40.0), done(36.0), done(44.0)]
    assert clock.estimate(runs, 8) == pytest.approx(search.MARGIN * 40.0)
    assert clock.estimate(runs, 16) == pytest.approx(search.MARGIN * 80.0)  # per shadow, scaled to the rung


def test_search_under_a_noisy_load_evaluates_at_least_80_percent_of_the_first_rung(tmp_path, monkeypatch) -> None:
    """Times drawn from 40-60 s with every sixth candidate 4× slower (another process holding a
    core): the 15 candidates take about 1,050 s of the 20 minutes. The median estimate lets all
    15 run; the slowest-so-far estimate (what the search used before) would have run 13."""
    rng = np.random.default_rng(0)
    times = [float(t) for t in rng.uniform(40.0, 60.0, size=32)]
    calls = _fake_search(monkeypatch, tmp_path, prepare_seconds=20.0,
                         cost=lambda i, shadows: times[i] * (4.0 if i % 6 == 5 else 1.0) * shadows / 8)
    spec = parse_spec({"audit": {"shadows": 16}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(15)]
    result = search.tune(spec, folder=tmp_path / "t", budget_minutes=20, space=space)
    first_rung = [name for name, shadows in calls if shadows == 8]
    assert len(first_rung) == 15, (len(first_rung), result.skipped)  # the target: at least 80 % (12)
    assert result.elapsed_seconds <= result.budget_seconds


def test_ray_backend_starts_ray_once_per_search_not_once_per_candidate(tmp_path, monkeypatch) -> None:
    from distillguard.audit import ray_backend

    class FakeRay:
        def __init__(self) -> None:
            self.inits = self.shutdowns = 0

        def is_initialized(self) -> bool:
            return self.inits > self.shutdowns

        def init(self, **kwargs) -> None:
            self.inits += 1

        def shutdown(self) -> None:
            self.shutdowns += 1

    fake = FakeRay()
    monkeypatch.setattr(ray_backend, "require_ray", lambda: fake)
    calls = _fake_search(monkeypatch, tmp_path, prepare_seconds=0.0, cost=lambda i, shadows: 1.0)
    real_evaluate = search._evaluate

    def evaluate_on_ray(*args, **kwargs):
        with ray_backend.ray_session(None):  # what each candidate's audit does (audit/ray_backend.py)
            assert fake.is_initialized()
            return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(search, "_evaluate", evaluate_on_ray)
    spec = parse_spec({"audit": {"shadows": 4, "backend": "ray"}}, base_dir=tmp_path)
    space = [Candidate(f"c{i}", {"distill": {"temperature": 1.0 + i}}) for i in range(4)]
    search.tune(spec, folder=tmp_path / "t", budget_minutes=20, space=space)
    assert len(calls) == 4 and (fake.inits, fake.shutdowns) == (1, 1)


@pytest.mark.slow
def test_cli_tune_with_a_tiny_budget_exits_within_a_minute_and_leaves_no_private_copy(tmp_path) -> None:
    import time

    write_csv_splits(tmp_path)
    (tmp_path / "spec.toml").write_text(csv_spec_text(extra=(
        "[teacher]\nhidden = [64]\nepochs = 15\n[student]\nhidden = [32]\nepochs = 15\n"
        "[audit]\nbootstrap = 0\nshadows = 4\ncanaries = 8\n")))
    started = time.monotonic()
    result = run_cli("tune", "spec.toml", "--budget-minutes", "0.1", "--out", "t", cwd=tmp_path)
    assert time.monotonic() - started < 60
    # Which of the two endings depends on the machine's speed: on a slow (or loaded) one the
    # data preparation alone predicts an evaluation longer than 6 s; on a fast one the first
    # candidate fits and the budget skips the rest. Either way the budget is said and kept.
    if result.returncode == 2:
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("error: tune: the budget of 0.1 min (6 s) is shorter than one evaluation")
        assert "--budget-minutes" in line
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "did not fit in 0.1 min and were skipped" in result.stdout, result.stdout
        assert "--budget-minutes" in result.stdout
    assert not (tmp_path / "t" / "private").exists()


def test_self_distillation_space_offers_no_transfer_selection_and_every_candidate_validates() -> None:
    spec = parse_spec({"teacher": {"split_ai": {"k": 4, "l": 1, "self_distill": True}}}, base_dir=Path("."))
    space = default_space(spec, n_transfer=3000)
    assert not any("transfer" in c.overrides for c in space) and len(space) >= 6
    for candidate in space:
        assert candidate.apply(spec).teacher.split_ai.self_distill  # valid, and still self-distilling
