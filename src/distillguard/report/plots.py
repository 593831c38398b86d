"""ROC plots for the report: log-log axes, where the low-FPR regime that matters is visible.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no global
backend switch, safe in threads and headless runs. Imported lazily by what draws.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from distillguard.runs import atomic_write_bytes

_DECADES = (1e-4, 1e-3)  # the lower axis limit: 1e-3, or 1e-4 when some curve resolves below 1e-3


#: Colour per model and line style per population, so every curve can be told apart in print
#: and by colour-blind readers (Okabe-Ito colours).
_COLOURS = {"teacher": "#0072B2", "student": "#D55E00"}
_STYLES = {False: "-", True: (0, (5, 2))}
_TOP = 1.35  # the y axis runs a little past TPR = 1, so a curve at 1 (canaries) is not hidden by the frame
_SKIPPED: ContextVar[bool] = ContextVar("roc_plots_skipped", default=False)


@contextlib.contextmanager
def without_plots() -> Iterator[None]:
    """Within the block :func:`save_roc_plot` draws nothing.

    For audits whose numbers are read and whose report nobody opens (``distillguard tune``'s
    candidates): the ten ROC plots of an audit cost 7 s of an idle 2-core machine's ~35 s per
    8-shadow candidate, and 30 s of 140 s under load. The report renders without them.
    """
    token = _SKIPPED.set(True)
    try:
        yield
    finally:
        _SKIPPED.reset(token)


def save_roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str) -> None:
    """Write a log-log ROC plot of several curves to ``path`` as PNG, atomically.

    Sized to be read at the report's width (600 × 460 px, legend at 11 pt): each model has
    its colour, canaries a dashed line, and the axis leaves room above TPR = 1.

    Args:
        curves: label → ``(fpr, tpr)``, each ``(k,)`` (e.g. from ``audit.metrics.roc``).
            Labels start with the model ("teacher", "student (canaries)"); the legend
            shows each curve's AUC (trapezoid on the curve).
        path: destination PNG; written to a temp file in the same folder, then renamed.
        title: figure title.
    """
    if _SKIPPED.get():
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    low = _lower_limit(curves)
    for label, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        area = float(np.trapezoid(tpr, fpr))
        model = label.split(" ")[0]
        ax.plot(np.clip(fpr, low, 1.0), np.clip(tpr, low, 1.0), lw=2.2, color=_COLOURS.get(model),
                ls=_STYLES["canaries" in label], label=f"{label} (AUC {area:.3f})")
    ax.plot([low, 1.0], [low, 1.0], ls=":", color="grey", lw=1.2, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(low, _TOP)
    ax.set_xlabel("false positive rate", fontsize=11)
    ax.set_ylabel("true positive rate", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.set_title(title, fontsize=12)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=11, framealpha=0.9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _lower_limit(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """1e-4 if any curve has a positive FPR below 1e-3, else 1e-3."""
    positive = [np.asarray(fpr, dtype=float) for fpr, _ in curves.values()]
    smallest = min((float(f[f > 0].min()) for f in positive if np.any(f > 0)), default=1.0)
    return _DECADES[0] if smallest < _DECADES[1] else _DECADES[1]
