"""The run folder: atomic writes, hashing, the manifest, and stage skipping.

A stage writes its outputs into a hidden ``.NAME.partial`` folder and renames it into
place only when everything in it is written and synced, so a crash never leaves a
half-written stage behind. The manifest records, per stage, a fingerprint of its
params and input hashes; a stage whose fingerprint is unchanged and whose outputs still
hash as recorded is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard import interrupts
from distillguard.errors import ArtifactError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with interrupts.deferred():
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the stage that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from None


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by its path relative to ``root``."""
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def partial_dir(final: Path) -> Path:
    """Where :func:`staged_dir` builds ``final`` before publishing it."""
    return final.with_name(f".{final.name}.partial")


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder that replaces ``final`` only if the block succeeds."""
    partial = partial_dir(final)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for file in partial.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    with interrupts.deferred():  # never leave ``final`` moved aside and not yet replaced
        if final.exists():
            trash = final.with_name(f".{final.name}.old")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(partial, final)
            shutil.rmtree(trash)
        else:
            os.replace(partial, final)
        _fsync_dir(final.parent)


@dataclass(frozen=True)
class StageRecord:
    """What the manifest says about one completed stage."""

    fingerprint: str
    outputs: dict[str, str]


class RunDir:
    """A run folder and its manifest (``manifest.json``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def __truediv__(self, part: str) -> Path:
        return self.root / part

    def load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"schema_version": 1, "stages": {}}
        return read_json(self.manifest_path)

    def save_manifest(self, manifest: Mapping[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.load_manifest()["stages"].get(name)

    def is_fresh(self, name: str, fingerprint: str) -> bool:
        """True when ``name`` completed with this fingerprint and its outputs are intact.

        A missing output means the stage runs again. An output whose bytes no longer match
        the manifest is an error, not a reason to recompute: something changed a recorded
        artifact, and silently replacing it would hide that.
        """
        record = self.stage(name)
        if not record or record.get("status") != "complete" or record.get("fingerprint") != fingerprint:
            return False
        fresh = True
        for rel, digest in record.get("outputs", {}).items():
            path = self.root / rel
            if not path.is_file():
                fresh = False
            elif sha256_file(path) != digest:
                raise ArtifactError(
                    f"{path}: sha256 does not match the manifest (file corrupted or tampered with); "
                    f"restore it, or delete {path.parent} to recompute the {name} stage"
                )
        return fresh

    def record_stage(
        self,
        name: str,
        *,
        fingerprint: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str],
        outputs: list[Path],
        started: float,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Record a completed stage; returns the output hashes it stored."""
        output_hashes: dict[str, str] = {}
        for out in outputs:
            if out.is_dir():
                output_hashes.update({str((out / rel).relative_to(self.root)): h for rel, h in hash_tree(out).items()})
            else:
                output_hashes[str(out.relative_to(self.root))] = sha256_file(out)
        finished = time.time()
        manifest = self.load_manifest()
        manifest["stages"][name] = {
            "status": "complete",
            "fingerprint": fingerprint,
            "params": dict(params),
            "inputs": dict(inputs),
            "outputs": output_hashes,
            "started": _iso(started),
            "finished": _iso(finished),
            "seconds": round(finished - started, 3),
            **(dict(extra) if extra else {}),
        }
        self.save_manifest(manifest)
        return output_hashes

    def output_hash(self, stage: str, rel: str) -> str:
        """The recorded sha256 of one output, checked against the file on disk."""
        record = self.stage(stage)
        path = self.root / rel
        if record is None or rel not in record.get("outputs", {}):
            raise ArtifactError(f"{path}: not recorded in {self.manifest_path}; run the {stage} stage first")
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; run the {stage} stage again")
        actual = sha256_file(path)
        if actual != record["outputs"][rel]:
            raise ArtifactError(
                f"{path}: sha256 {actual[:12]}… does not match the manifest's {record['outputs'][rel][:12]}… "
                "(file corrupted or tampered with); rerun the stage or restore the file"
            )
        return actual


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def library_versions() -> dict[str, str]:
    """Versions that decide a run's numbers (recorded in the manifest and report)."""
    import platform

    import numpy
    import torch

    from distillguard._version import __version__

    return {"distillguard": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}
