"""``distillguard tune``: a wall-clock-budgeted search for the least leaky good student.

Successive halving over full pipeline runs: every candidate is first audited with half
the spec's shadow pipelines (a cheap, noisier LiRA), and the most promising ones are
audited again with all of them. Each candidate is a real run (teacher, release, student,
and LiRA with shadows that replay that candidate's whole defense), so the numbers the
tuner predicts are the numbers ``distillguard run`` will produce with the chosen spec,
up to the held-out population and the slightly smaller transfer set the tuner uses.

Candidates that differ only downstream of the teacher share its shadow teachers
(:mod:`distillguard.audit.shadow_cache`), which is most of an audit's cost.
Selection never reads the test split (see :mod:`distillguard.tuning.workspace`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from distillguard import progress
from distillguard.audit.ray_backend import ray_session
from distillguard.audit.shadow_cache import shadow_teacher_cache
from distillguard.config import Spec
from distillguard.errors import ConfigError
from distillguard.models.artifact import load_classifier
from distillguard.runs import atomic_write_json, atomic_write_text, read_json, sha256_json
from distillguard.pipeline import run as run_pipeline
from distillguard.report.plots import without_plots
from distillguard.tuning.pareto import choose, pareto_front
from distillguard.tuning.result import Evaluation, TuneResult
from distillguard.tuning.space import Candidate, default_space, override
from distillguard.tuning.workspace import Workspace, prepare_workspace

TOP_FRACTION = 1 / 3  # of rung-0 candidates promoted to the full audit
MARGIN = 1.15  # an evaluation is expected to take the median cost times this before the budget admits it


def tune(spec: Spec, *, folder: Path, budget_minutes: float = 20.0, max_accuracy_drop: float = 0.03,
         fpr: str = "0.01", space: list[Candidate] | None = None, keep_runs: bool = False) -> TuneResult:
    """Search the defense knobs within ``budget_minutes`` and write the Pareto front and the best spec.

    Every exit (the result, a budget too short for one evaluation, an error, Ctrl-C) removes
    the private copies (``folder/private``: data, candidate runs, shadow teachers) unless
    ``keep_runs``.

    Args:
        spec: the user's spec; its ``[gate].attack`` is the attack that measures leakage.
        folder: output folder (``tune.json``, ``pareto.png``, ``report.html``, ``best.toml``).
        max_accuracy_drop: a candidate qualifies when its estimated accuracy is at most
            this far below the undefended teacher's.
        keep_runs: keep the candidate runs and the data copies (sensitive) afterwards.

    Raises:
        ConfigError: the budget is not positive, or is spent before one evaluation could fit.
    """
    if not budget_minutes > 0:
        raise ConfigError(f"tune: --budget-minutes is {budget_minutes:g}; expected a positive number of minutes")
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _ray_for_the_search(spec):
            return _search(spec, folder=folder, clock=_Budget(started, budget_minutes * 60.0),
                           max_accuracy_drop=max_accuracy_drop, fpr=fpr, space=space)
    finally:
        if not keep_runs:
            shutil.rmtree(folder / "private", ignore_errors=True)


@contextmanager
def _ray_for_the_search(spec: Spec) -> Iterator[None]:
    """With ``[audit] backend = "ray"``, one Ray session for the whole search.

    Every candidate's audit joins the instance started here (``ray_session`` keeps a
    running one), instead of starting and stopping Ray once per candidate.
    """
    if spec.audit.backend != "ray":
        yield
        return
    with ray_session(spec.audit.ray_address):
        yield


class _Budget:
    """Elapsed time against the budget, and whether the next evaluation still fits.

    An evaluation's cost is estimated per shadow pipeline, as the *median* of the finished
    evaluations' seconds per shadow, times the rung's shadows and a margin of
    :data:`MARGIN`: robust to one slow candidate (the first also trains the shared shadow
    teachers; a loaded machine slows some), which the slowest evaluation would let cut the
    search short. A candidate is skipped only when the time left cannot hold that
    estimate; the next one is still tried. Before any evaluation, the estimate is three
    times the workspace's preparation (a candidate trains a teacher, a student and shadow
    pipelines; preparing trains one teacher).
    """

    def __init__(self, started: float, seconds: float) -> None:
        self.started, self.seconds, self.first_estimate = started, seconds, 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def estimate(self, evaluations: list[Evaluation], shadows: int) -> float:
        if not evaluations:
            return self.first_estimate
        per_shadow = float(np.median([e.seconds / max(e.shadows, 1) for e in evaluations]))
        return MARGIN * per_shadow * max(shadows, 1)

    def fits(self, evaluations: list[Evaluation], shadows: int) -> bool:
        return self.elapsed() + self.estimate(evaluations, shadows) <= self.seconds


def _search(spec: Spec, *, folder: Path, clock: _Budget, max_accuracy_drop: float, fpr: str,
            space: list[Candidate] | None) -> TuneResult:
    work = prepare_workspace(spec, folder / "private" / "data")
    clock.first_estimate = 3.0 * clock.elapsed()
    space = space if space is not None else default_space(spec, n_transfer=work.n_transfer)
    full = spec.audit.shadows
    rungs = [full] if full < 8 else [max(4, (full // 4) * 2), full]
    if not clock.fits([], rungs[0]):
        raise ConfigError(_too_short(clock, n_candidates=len(space)))
    evaluations: list[Evaluation] = []
    skipped: list[str] = []
    with shadow_teacher_cache(folder / "private" / "shadow-teachers"), \
            progress.task(f"tune: {len(space)} candidates, {clock.seconds / 60:g} min budget", len(space)) as advance:
        for candidate in space:
            if evaluations and not clock.fits(evaluations, rungs[0]):
                skipped.append(candidate.name)
                continue
            evaluations.append(_evaluate(candidate, spec, work, folder=folder, shadows=rungs[0], fpr=fpr))
            advance(1)
    if len(rungs) > 1:
        promoted = _promoted(evaluations, min_accuracy=_bar(work, max_accuracy_drop))
        with shadow_teacher_cache(folder / "private" / "shadow-teachers"), \
                progress.task(f"tune: full audit of {len(promoted)} candidates", len(promoted)) as advance:
            for first in promoted:
                if not clock.fits(evaluations, rungs[1]):
                    skipped.append(f"{first.name} (full audit)")
                    continue
                evaluations.append(_evaluate(Candidate(first.name, first.overrides), spec, work, folder=folder,
                                             shadows=rungs[1], fpr=fpr))
                advance(1)
    return _finish(spec, work, folder=folder, evaluations=evaluations, skipped=skipped, clock=clock,
                   max_accuracy_drop=max_accuracy_drop)


def _too_short(clock: _Budget, *, n_candidates: int) -> str:
    one = clock.elapsed() + clock.first_estimate
    return (f"tune: the budget of {clock.seconds / 60:g} min ({clock.seconds:.0f} s) is shorter than one evaluation: "
            f"preparing the data and the reference teacher took {clock.elapsed():.0f} s, and a candidate trains a "
            f"teacher, a student and its shadow pipelines (about {clock.first_estimate:.0f} s at least); give "
            f"--budget-minutes {max(0.1, np.ceil(one / 6) / 10):g} or more for one candidate, about "
            f"{np.ceil(clock.first_estimate * n_candidates / 60):g} for all {n_candidates}; nothing was kept")


def _finish(spec: Spec, work: Workspace, *, folder: Path, evaluations: list[Evaluation], skipped: list[str],
            clock: _Budget, max_accuracy_drop: float) -> TuneResult:
    """Choose among the fullest audits, write best.toml and the summary."""
    final = [e for e in evaluations if e.shadows == max(x.shadows for x in evaluations)]
    bar = _bar(work, max_accuracy_drop)
    index, met = choose([e.point() for e in final], min_accuracy=bar)
    chosen = final[index]
    front = pareto_front([e.point() for e in final])
    best_spec = folder / "best.toml"
    atomic_write_text(best_spec, override(spec, chosen.overrides).to_toml())
    result = TuneResult(folder, evaluations, chosen, met, [evaluations.index(final[i]) for i in front],
                        work.teacher_accuracy, bar, best_spec, clock.seconds, clock.elapsed(), skipped)
    _write_summary(result)
    return result


def _bar(work: Workspace, max_drop: float) -> float:
    return work.teacher_accuracy - max_drop


def _promoted(first: list[Evaluation], *, min_accuracy: float) -> list[Evaluation]:
    """The top third of the first rung for the full audit: qualifying accuracy first, then lowest AUC and TPR."""
    order = sorted(range(len(first)), key=lambda i: (first[i].point().accuracy < min_accuracy,
                                                     first[i].point().auc, first[i].point().tpr))
    return [first[i] for i in order[:max(1, int(np.ceil(TOP_FRACTION * len(first))))]]


def _evaluate(candidate: Candidate, spec: Spec, work: Workspace, *, folder: Path, shadows: int, fpr: str) -> Evaluation:
    """One full pipeline run of the candidate on the workspace data, audited with ``shadows`` shadows."""
    key = sha256_json({"overrides": candidate.overrides, "shadows": shadows})[:12]
    candidate_spec = override(candidate.apply(spec), {
        "run": {"name": f"tune-{key}"}, "data": {**_data_defaults(), **work.data},
        "audit": {"shadows": shadows, "canaries": spec.audit.canaries if shadows >= 4 else 0},
    })
    run_dir = folder / "private" / "runs" / key
    cached = run_dir / "evaluation.json"
    if cached.is_file():
        return Evaluation(**read_json(cached))
    started = time.monotonic()
    with without_plots():  # nobody opens a candidate's report: its numbers are what the search reads
        report = run_pipeline(candidate_spec, run_dir=run_dir).report
    seconds = time.monotonic() - started
    student, _ = load_classifier(run_dir / "student")
    correct = student.logits(work.nonmembers.X).argmax(axis=1) == work.nonmembers.y
    attack = spec.gate.attack

    def find(target: str, population: str) -> dict | None:
        return next((a for a in report["attacks"] if a["attack"] == attack and a["target"] == target
                     and a["population"] == population), None)

    student_all, canaries, teacher_all = find("student", "all"), find("student", "canaries"), find("teacher", "all")
    evaluation = Evaluation(
        name=candidate.name, overrides=candidate.overrides, shadows=shadows, seconds=seconds,
        accuracy=float(correct.mean()), accuracy_ci=_wilson(int(correct.sum()), len(correct)),
        fidelity=float(report["utility"]["student"]["test_accuracy"]), attack=attack,
        auc=student_all["auc"], auc_ci=list(student_all.get("auc_ci") or [student_all["auc"]] * 2),
        tpr=student_all["tpr_at_fpr"].get(fpr),
        canary_auc=canaries["auc"] if canaries else None,
        canary_tpr=canaries["tpr_at_fpr"].get(fpr) if canaries else None,
        teacher_auc=teacher_all["auc"] if teacher_all else None,
    )
    atomic_write_json(cached, asdict(evaluation))
    progress.log(f"tune: {candidate.name} [{shadows} shadows]: accuracy {evaluation.accuracy:.3f}, "
                 f"{attack} AUC {evaluation.auc:.3f}, TPR@{fpr} {evaluation.tpr} ({seconds:.0f}s)")
    return evaluation


def _data_defaults() -> dict[str, Any]:
    """[data] keys a workspace replaces: no built-in, no user files."""
    return {"builtin": None, "sizes": None, "members": None, "nonmembers": None, "transfer": None, "test": None}


def _wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _write_summary(result: TuneResult) -> None:
    from distillguard.tuning.report import write_tune_report

    atomic_write_json(result.folder / "tune.json", {
        "teacher_accuracy": result.teacher_accuracy, "min_accuracy": result.min_accuracy,
        "met_target": result.met_target, "chosen": asdict(result.chosen), "front": result.front,
        "evaluations": [asdict(e) for e in result.evaluations], "skipped": result.skipped,
        "budget_seconds": result.budget_seconds, "elapsed_seconds": result.elapsed_seconds,
        "best_spec": str(result.best_spec),
        "note": "accuracy: the student on the nonmembers (never trained on by teacher or student); leakage: the "
                "attack on the student, calibrated on shadow pipelines that replay each candidate; the test split "
                "was never read",
    })
    write_tune_report(result)
