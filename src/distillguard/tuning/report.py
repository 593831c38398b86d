"""What ``distillguard tune`` leaves behind: a Pareto plot and a self-contained HTML page."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from jinja2 import Environment

from distillguard.runs import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from distillguard.tuning.result import TuneResult

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>distillguard tune</title>
<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.front{font-weight:bold}.no{color:#b00}.yes{color:#070}</style></head><body>
<h1>Defense search</h1>
<p class="{{ 'yes' if r.met_target else 'no' }}">{% if r.met_target %}Chosen: <b>{{ r.chosen.name }}</b>, the least leaky
candidate within {{ '%.1f' % (100 * (r.teacher_accuracy - r.min_accuracy)) }} points of the undefended teacher's accuracy.
{% else %}No candidate reached {{ '%.1f' % (100 * r.min_accuracy) }}% accuracy; the most accurate one, <b>{{ r.chosen.name }}</b>,
is shown as the choice.{% endif %}</p>
<p>Undefended teacher: {{ '%.1f' % (100 * r.teacher_accuracy) }}% on the nonmembers. Budget {{ '%.0f' % (r.budget_seconds / 60) }} min,
used {{ '%.1f' % (r.elapsed_seconds / 60) }} min. Leakage: {{ r.chosen.attack }} on the student, calibrated on shadow pipelines
that replay each candidate's whole defense. Accuracy: the student on the nonmembers (never trained on). The test split was not read.</p>
<img alt="Pareto front" src="data:image/png;base64,{{ plot }}">
<table><tr><th>candidate</th><th>shadows</th><th>accuracy</th><th>fidelity</th><th>AUC</th><th>AUC 95% CI</th>
<th>TPR@1%FPR</th><th>canary AUC</th><th>seconds</th></tr>
{% for e in r.evaluations %}<tr class="{{ 'front' if loop.index0 in r.front else '' }}"><td>{{ e.name }}</td><td>{{ e.shadows }}</td>
<td>{{ '%.3f' % e.accuracy }}</td><td>{{ '%.3f' % e.fidelity }}</td><td>{{ '%.3f' % e.auc }}</td>
<td>{{ '%.3f' % e.auc_ci[0] }}–{{ '%.3f' % e.auc_ci[1] }}</td><td>{{ 'n/a' if e.tpr is none else '%.3f' % e.tpr }}</td>
<td>{{ 'n/a' if e.canary_auc is none else '%.3f' % e.canary_auc }}</td><td>{{ '%.0f' % e.seconds }}</td></tr>
{% endfor %}</table>
{% if r.skipped %}<p>Not evaluated (budget): {{ r.skipped | join(', ') }}.</p>{% endif %}
<p>Bold rows are on the Pareto front of the final rung. The chosen spec: <code>{{ r.best_spec }}</code>.</p>
</body></html>"""


def pareto_png(result: TuneResult) -> bytes:
    """Accuracy against attack TPR at low FPR, front highlighted, the choice circled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, e in enumerate(result.evaluations):
        x = 1.0 if e.tpr is None else e.tpr
        on_front = i in result.front
        ax.scatter([x], [e.accuracy], s=40 if on_front else 18, color="C0" if on_front else "grey",
                   marker="o" if e.shadows == result.chosen.shadows else "x", zorder=3)
        if on_front:
            ax.annotate(e.name, (x, e.accuracy), fontsize=7, xytext=(4, 3), textcoords="offset points")
    c = result.chosen
    ax.scatter([1.0 if c.tpr is None else c.tpr], [c.accuracy], s=160, facecolors="none", edgecolors="C3", lw=1.5,
               zorder=4, label="chosen")
    ax.axhline(result.teacher_accuracy, color="C2", ls="--", lw=1, label="undefended teacher")
    ax.axhline(result.min_accuracy, color="C1", ls=":", lw=1, label="accuracy bar")
    ax.set_xlim(left=-0.01)
    ax.set_xlabel(f"{c.attack} TPR at 1% FPR on the student (lower is better)")
    ax.set_ylabel("student accuracy on nonmembers")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_tune_report(result: TuneResult) -> None:
    png = pareto_png(result)
    atomic_write_bytes(result.folder / "pareto.png", png)
    page = Environment(autoescape=True).from_string(_PAGE).render(r=result, plot=base64.b64encode(png).decode())
    atomic_write_text(result.folder / "report.html", page)
