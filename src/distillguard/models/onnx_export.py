"""The student as one ONNX graph: raw feature rows in, class probabilities out.

The graph holds the fitted preprocessing, the network and the softmax, so an ONNX
runtime answers the same raw rows as :meth:`Classifier.predict_proba`. Exported with
PyTorch's ``torch.export``-based exporter (it needs the ``onnxscript`` package), with a
dynamic row count; the weights are stored inside the one file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillguard.errors import ArtifactError, ConfigError, DistillGuardError
from distillguard.models.artifact import Classifier

INPUT, OUTPUT = "features", "probabilities"
#: Largest difference from the PyTorch bundle's probabilities the export accepts.
PARITY_TOLERANCE = 1e-5


class _Served(nn.Module):
    """(x − mean) / scale → the network → softmax, in float32."""

    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.model = clf.model
        self.register_buffer("mean", torch.from_numpy(np.asarray(clf.scaler.mean, dtype=np.float32)))
        self.register_buffer("scale", torch.from_numpy(np.asarray(clf.scaler.scale, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model((x - self.mean) / self.scale), dim=-1)


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _importable(name)]
    if missing:
        raise DistillGuardError(f"ONNX export needs {', '.join(missing)}: pip install 'distillguard[serve]'")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def export_onnx(clf: Classifier, path: Path) -> None:
    """Write ``clf`` as ``path`` and check it against PyTorch on rows around the scaler's mean.

    The graph takes the raw numeric features; a table with categorical or boolean columns is
    encoded in Python first (:class:`~distillguard.data.encoding.TableEncoder`), which the
    graph does not hold, so such a student is refused rather than exported half-way.
    """
    if getattr(clf.schema, "encoding", None) is not None:
        raise ConfigError("[deploy] onnx = true: the student's table has categorical or boolean columns, whose "
                          "encoding is not part of the ONNX graph; export it without onnx, or encode the table "
                          "to numeric columns first")
    _require_onnx()
    served = _Served(clf).eval().cpu()
    clf.model.cpu()
    example = torch.from_numpy(np.asarray(clf.scaler.mean, dtype=np.float32)).repeat(2, 1)
    rows = torch.export.Dim("rows", min=1)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_loggers():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(served, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: rows},), dynamo=True, external_data=False, verbose=False)
    program.save(str(path), external_data=False)
    check_onnx_parity(clf, path, _probe_rows(clf))


@contextlib.contextmanager
def _quiet_loggers():
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _probe_rows(clf: Classifier, n: int = 64) -> np.ndarray:
    """Synthetic rows (mean ± 3 scales, seeded): no data is needed to check the graph."""
    gen = np.random.default_rng(0)
    noise = gen.uniform(-3, 3, size=(n, len(clf.scaler.mean)))
    return (clf.scaler.mean + noise * clf.scaler.scale).astype(np.float32)


def onnx_probabilities(path: Path, X: np.ndarray) -> np.ndarray:
    """(n, classes) probabilities from the ONNX file, by onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.asarray(X, dtype=np.float32)})[0]


def check_onnx_parity(clf: Classifier, path: Path, X: np.ndarray) -> float:
    """Largest |ONNX − PyTorch| probability on ``X``; an ArtifactError beyond the tolerance."""
    gap = float(np.abs(onnx_probabilities(path, X) - clf.predict_proba(X)).max())
    if not gap <= PARITY_TOLERANCE:
        raise ArtifactError(f"{path}: ONNX probabilities differ from PyTorch's by {gap:.2e} "
                            f"(expected at most {PARITY_TOLERANCE:g})")
    return gap
