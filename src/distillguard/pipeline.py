"""The pipeline: each stage on a run folder, and the whole run.

Both the public front (:mod:`distillguard.api`) and the tuner (:mod:`distillguard.tuning`)
run pipelines through here, so neither has to import the other.
Each stage function takes a spec (path, :class:`~distillguard.config.Spec`, or None for
the built-in demo) and a run folder, and skips itself when its inputs are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard import device as devices
from distillguard import distributed
from distillguard.config import ROLES, Spec, load_spec
from distillguard.config.data import LM_FILES
from distillguard.data import TransferGuard, iter_transfer, load_members, load_role
from distillguard.report.build import build_report, write_report
from distillguard.errors import ConfigError, DataError
from distillguard.runs import RunDir, atomic_write_text, library_versions
from distillguard.stages.dispatch import run_stage
from distillguard.stages.export import destroy_teacher as _destroy_teacher

SpecLike = str | Path | Spec | None


@contextmanager
def computing_on(device: str = "auto") -> Iterator[None]:
    """Compute on ``device`` (cpu, cuda, auto) and, under torchrun, join the process group.

    Every stage function runs inside it, so a stage called on its own respects ``--device``
    as the whole pipeline does.
    """
    resolved = devices.resolve(device)
    distributed.init_from_environment(resolved)
    with devices.use(resolved):
        yield


def _on_main(write) -> None:
    """Files only rank 0 writes under torchrun (the others wait until they exist)."""
    if distributed.world().is_main:
        write()
    distributed.barrier()


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]

    @property
    def gate_passed(self) -> bool:
        return bool(self.report["gate"]["passed"])


def open_run(spec: SpecLike, run_dir: str | Path | None = None, *, scan: bool = False) -> tuple[Spec, RunDir]:
    """Resolve the spec and run folder (default ``runs/NAME``) and record the resolved spec.

    ``scan``: the caller is ``distillguard scan``, whose spec has ``[scan]``; no other command takes one.
    """
    spec = _for_command(spec, scan=scan)
    run = RunDir(run_dir if run_dir is not None else Path("runs") / spec.run.name)

    def record() -> None:
        run.root.mkdir(parents=True, exist_ok=True)
        text = spec.to_toml()
        spec_path = run / "spec.toml"
        if not spec_path.exists() or spec_path.read_text(encoding="utf-8") != text:
            atomic_write_text(spec_path, text)
        manifest = run.load_manifest()
        manifest["versions"] = library_versions()
        manifest["seed"] = spec.run.seed
        manifest["world_size"] = distributed.world().size
        run.save_manifest(manifest)

    _on_main(record)
    return spec, run


def _for_command(spec: SpecLike, *, scan: bool) -> Spec:
    """The loaded spec, checked to be a scan spec (``[scan]``) exactly when the command is ``scan``."""
    source = spec if isinstance(spec, str | Path) else "spec"
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if scan and spec.scan is None:
        raise ConfigError(f"{source}: distillguard scan needs a [scan] table with model = PATH or predictions = PATH")
    if not scan and spec.scan is not None:
        raise ConfigError(f"{source}: [scan] audits a model you bring: run it with distillguard scan, or drop [scan] "
                          "to train and distill")
    return spec


def check_data(spec: Spec) -> None:
    """Load every role once, so bad data fails before any stage writes anything."""
    check_files_exist(spec)
    if spec.is_lm:
        from distillguard.stages.lm.checks import check_text_data

        check_text_data(spec)
        return
    schema, _ = load_members(spec.data, seed=spec.run.seed)
    for role in ROLES[1:]:
        if role != "transfer":
            load_role(spec.data, role, schema=schema, seed=spec.run.seed)
    guard = TransferGuard(spec.data, schema=schema, seed=spec.run.seed)  # the transfer set may be large: chunks
    for chunk in iter_transfer(spec.data, schema=schema, seed=spec.run.seed, rows=spec.run.shard_rows):
        guard.check(chunk, first_row=int(chunk.ids[0]))


def check_files_exist(spec: Spec) -> None:
    """Every file ``[data]`` names that is missing, reported at once (not the first only)."""
    missing = [(role, Path(path)) for role in (*ROLES, *LM_FILES)
               if (path := getattr(spec.data, role, None)) is not None and not Path(path).is_file()]
    if len(missing) == 1:
        role, path = missing[0]
        raise DataError(f"{path}: [data].{role} file not found")
    if missing:
        listed = "; ".join(f"{path} ([data].{role})" for role, path in missing)
        raise DataError(f"{len(missing)} data files not found: {listed}; paths are relative to the spec file's folder")


def check_backend(spec: Spec) -> None:
    """A spec whose shadows train on Ray needs Ray here: say so before any model trains."""
    if spec.audit.backend == "ray" and spec.audit.shadows:
        from distillguard.audit.ray_backend import require_ray

        require_ray()


def train_teacher(spec: SpecLike = None, *, run_dir: str | Path | None = None, device: str = "auto") -> Path:
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if not spec.is_lm:
        load_members(spec.data, seed=spec.run.seed)
    with computing_on(device):
        spec, run = open_run(spec, run_dir)
        run_stage(spec, run, "teacher")
    return run / "teacher"


def label(spec: SpecLike = None, *, run_dir: str | Path | None = None, device: str = "auto") -> Path:
    with computing_on(device):
        spec, run = open_run(spec, run_dir)
        run_stage(spec, run, "label")
    return run / "softlabels"


def distill(spec: SpecLike = None, *, run_dir: str | Path | None = None, device: str = "auto") -> Path:
    with computing_on(device):
        spec, run = open_run(spec, run_dir)
        run_stage(spec, run, "distill")
    return run / "student"


def audit(spec: SpecLike = None, *, run_dir: str | Path | None = None, device: str = "auto") -> RunResult:
    """Run the audit stage and (re)write report.json and report.html."""
    with computing_on(device):
        spec, run = open_run(spec, run_dir)
        run_stage(spec, run, "audit")
        return RunResult(run.root, report(run.root))


def report(run_dir: str | Path) -> dict[str, Any]:
    """(Re)render report.json and report.html of a run from its audit/ and spec.toml."""
    run = RunDir(run_dir)
    spec = load_spec(run / "spec.toml")
    result = build_report(run, spec)
    _on_main(lambda: write_report(run, result))
    return result


def export(spec: SpecLike = None, *, run_dir: str | Path | None = None, destroy_teacher: bool = False,
           device: str = "auto", onnx: bool = False) -> Path:
    """The deploy bundle; ``onnx=True`` also writes ``deploy/model.onnx`` (as ``[deploy] onnx = true``,
    which the run's recorded spec then keeps)."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if onnx and not spec.deploy.onnx:
        spec = spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"onnx": True})})
    with computing_on(device):
        spec, run = open_run(spec, run_dir)
        run_stage(spec, run, "export")
        if destroy_teacher:
            _on_main(lambda: _destroy_teacher(run))
    return run / "deploy"


def scan(spec: SpecLike, *, run_dir: str | Path | None = None, device: str = "auto") -> RunResult:
    """Audit the model (or predictions) ``[scan]`` names: audit/, report.json and report.html, target "model".

    The gate's verdict is in the returned report, as for :func:`run`.
    """
    from distillguard.stages.scan import run_scan_stage

    spec = _for_command(spec, scan=True)
    check_files_exist(spec)  # before the run folder is made
    with computing_on(device):
        spec, run = open_run(spec, run_dir, scan=True)
        run_scan_stage(spec, run)
        return RunResult(run.root, report(run.root))


def run(spec: SpecLike = None, *, run_dir: str | Path | None = None, destroy_teacher: bool = False,
        device: str = "auto") -> RunResult:
    """The whole pipeline: teacher → label → distill → audit → report → export.

    Data are checked before anything is written. The gate's verdict is in the returned
    report; a failing gate is a result, not an error. ``device``: cpu, cuda or auto (CUDA
    when visible). Under ``torchrun`` every rank calls this and rank 0 writes the run.
    """
    spec = _for_command(spec, scan=False)  # a scan spec fails before its data are read
    with computing_on(device):
        check_data(spec)
        check_backend(spec)
        spec, run = open_run(spec, run_dir)
        for stage in ("teacher", "label", "distill", "audit"):
            run_stage(spec, run, stage)
        result = report(run.root)
        run_stage(spec, run, "export")
        if destroy_teacher:
            _on_main(lambda: _destroy_teacher(run))
    return RunResult(run.root, result)
