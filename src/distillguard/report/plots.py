"""ROC plots for the report: log-log axes, where the low-FPR regime that matters is visible.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no global
backend switch, safe in threads and headless runs. Imported lazily by what draws.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from distillguard.runs import atomic_write_bytes

_DECADES = (1e-4, 1e-3)  # the lower axis limit: 1e-3, or 1e-4 when some curve resolves below 1e-3


def save_roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str) -> None:
    """Write a log-log ROC plot of several curves to ``path`` as PNG, atomically.

    Args:
        curves: label → ``(fpr, tpr)``, each ``(k,)`` (e.g. from ``audit.metrics.roc``).
            The legend shows each curve's AUC (trapezoid on the curve).
        path: destination PNG; written to a temp file in the same folder, then renamed.
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    low = _lower_limit(curves)
    for label, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        area = float(np.trapezoid(tpr, fpr))
        ax.plot(np.clip(fpr, low, 1.0), np.clip(tpr, low, 1.0), lw=1.6, label=f"{label} (AUC {area:.3f})")
    ax.plot([low, 1.0], [low, 1.0], ls="--", color="grey", lw=1.0, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(low, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _lower_limit(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """1e-4 if any curve has a positive FPR below 1e-3, else 1e-3."""
    positive = [np.asarray(fpr, dtype=float) for fpr, _ in curves.values()]
    smallest = min((float(f[f > 0].min()) for f in positive if np.any(f > 0)), default=1.0)
    return _DECADES[0] if smallest < _DECADES[1] else _DECADES[1]
