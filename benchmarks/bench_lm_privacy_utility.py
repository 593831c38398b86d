"""Privacy–utility table for causal LMs: undefended teacher, plain KD, private prediction, DP synthetic transfer.

Usage: python benchmarks/bench_lm_privacy_utility.py [--corpus pii-corpus] [--spec examples/pii-corpus.toml]
           [--runs-dir DIR] [--rows plain pp dp-synth] [--epsilons 2 8] [--shards 8] [--query-fraction 0.05]
           [--dp-synth '{"transfer": {"synthetic": {...}}}'] [--existing] [--no-docs]

Each row but the teacher's is one run of the real pipeline (``distillguard.run``) on the
spec ``--spec`` with ``[data] builtin = --corpus`` and one ``[softlabels]`` release:

* ``plain``: plain KD (``private_prediction = false``); its audit also gives the
  **undefended teacher** row (the same teacher, attacked and probed the same way);
* ``pp``: ``private_prediction = {shards, epsilon, query_fraction}`` at each ``--epsilons``;
  the runs after the first start from a copy of the first one's folder, so they reuse its
  teacher stage (the teacher, the public model and the shard teachers do not depend on ε);
* ``dp-synth``: the spec overrides of ``--dp-synth`` (JSON, section -> keys), for the DP
  synthetic transfer text mechanism; without them, or when the spec does not validate
  (the mechanism is not in this version), the row says "not run" and why.

Run folders are ``--runs-dir``/``<corpus>-<row>``; with ``--existing`` nothing runs and the
table is rebuilt from the finished folders there (a missing one is "not run"). Writes the
table into docs/results/lm-privacy-utility.md (block ``lm-privacy-utility-<corpus>``)
unless ``--no-docs``. Not a test: the numbers are seeded, the seconds depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import distillguard
from distillguard.config import parse_spec
from distillguard.errors import ConfigError
from results_page import add_docs_flag, publish

CORPUS_SECTIONS = {"pii-corpus": "pii_corpus"}  # builtin -> its size section, kept only for that corpus


def spec_for(base: dict[str, Any], corpus: str, name: str, overrides: dict[str, Any]) -> str:
    """The TOML of one run: ``base`` on ``corpus``, renamed, with ``overrides`` merged per section (validated)."""
    raw = json.loads(json.dumps(base))
    data = {k: v for k, v in raw.get("data", {}).items() if k not in CORPUS_SECTIONS.values()}
    if corpus in CORPUS_SECTIONS and CORPUS_SECTIONS[corpus] in raw.get("data", {}):
        data[CORPUS_SECTIONS[corpus]] = raw["data"][CORPUS_SECTIONS[corpus]]
    raw["data"] = {**data, "builtin": corpus}
    raw["run"] = {**raw.get("run", {}), "name": name}
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_spec(raw, base_dir=Path(".")).to_toml()


def planned_rows(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    """(label, folder name, spec overrides or None when it cannot run, why not) per run."""
    rows: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    if "plain" in args.rows:
        rows.append(("plain KD", "plain", {"softlabels": {"private_prediction": False}}, None))
    if "pp" in args.rows:
        for eps in sorted(args.epsilons, reverse=True):
            pp = {"shards": args.shards, "epsilon": eps, "query_fraction": args.query_fraction}
            rows.append((f"private prediction, ε = {eps:g}, {args.shards} shards, {args.query_fraction:g} of positions",
                         f"pp-eps{eps:g}", {"softlabels": {"private_prediction": pp}}, None))
    if "dp-synth" in args.rows:
        overrides = json.loads(args.dp_synth) if args.dp_synth else None
        rows.append(("DP synthetic transfer", "dp-synth", overrides,
                     None if overrides else "no --dp-synth overrides given"))
    return rows


def run_one(spec_text: str, folder: Path, *, seed_from: Path | None) -> float:
    """Run one spec into ``folder`` (a copy of ``seed_from`` first, for its teacher stage); wall seconds."""
    if seed_from is not None and not folder.exists() and (seed_from / "manifest.json").is_file():
        shutil.copytree(seed_from, folder, ignore=shutil.ignore_patterns("report.*", "deploy"))
    spec_path = folder.parent / f"{folder.name}.toml"
    spec_path.write_text(spec_text)
    started = time.perf_counter()
    distillguard.run(str(spec_path), run_dir=folder)
    return time.perf_counter() - started


def _attack(report: dict, target: str, name: str = "reference") -> dict | None:
    return next((a for a in report["attacks"] if a["attack"] == name and a["target"] == target), None)


def _auc_cell(attack: dict) -> str:
    return f"{attack['auc']:.3f} [{attack['auc_ci'][0]:.3f}, {attack['auc_ci'][1]:.3f}]"


def _pii(report: dict, target: str) -> float | None:
    return next((p["exact_match_rate"] for p in report["probes"]
                 if p["probe"] == "pii_completion" and p["target"] == target), None)


def _worst_canary(report: dict, target: str) -> float | None:
    excess = [p["excess_bits"] for p in report["probes"] if p["probe"] == "exposure" and p["target"] == target
              and p.get("excess_bits") is not None]
    return max(excess) if excess else None


def _epsilon(report: dict) -> str:
    privacy = report.get("privacy") or {}
    made = report.get("transfer_set") or {}
    if privacy.get("epsilon") is None and made.get("epsilon") is not None:  # the DP generator of the transfer text
        return f"{made['epsilon']:.2f} (δ = {made['delta']:.0e}; the transfer text's generator)"
    if privacy.get("epsilon") is None:
        return "none"
    text = f"{privacy['epsilon']:.2f} (δ = {privacy['delta']:.0e})"
    dd = privacy.get("data_dependent")
    return text + (f"; data-dependent {dd['epsilon']:.2f}" if dd else "")


def row_cells(label: str, report: dict, manifest: dict, target: str) -> list[str]:
    """One table row of a finished run, for ``target`` (teacher or student)."""
    u, attack, public = report["utility"], _attack(report, target), _attack(report, target, "public_reference")
    ppl = u[target]["test_perplexity"]
    ratio = ppl / u["teacher"]["test_perplexity"]
    auc = "n/a" if attack is None else _auc_cell(attack)
    tpr = None if attack is None else attack["tpr_at_fpr"].get("0.01")
    tpr_cell = "n/a" if tpr is None else f"{100 * tpr:.1f}%"
    auc_upper = None if attack is None else attack["auc_ci"][1]
    if public is not None:  # the public model as the reference (private prediction): the gate reads the worse
        public_tpr = public["tpr_at_fpr"].get("0.01")
        auc += f"; public model: {_auc_cell(public)}"
        tpr_cell += f"; {100 * public_tpr:.1f}%" if public_tpr is not None else "; n/a"
        auc_upper = max(auc_upper or 0.0, public["auc_ci"][1])
        tpr = max(tpr or 0.0, public_tpr or 0.0)
    canary, pii = _worst_canary(report, target), _pii(report, target)
    privacy = report.get("privacy") or {}
    lam = privacy.get("mean_lambda")
    if target == "teacher":
        gate, eps, seconds = "–", "none", f"{manifest['stages']['teacher']['seconds']:.0f}"
    else:
        gate = "pass" if report["gate"]["passed"] else "fail: " + ", ".join(
            c["name"].split("[")[0] for c in report["gate"]["checks"] if not c["passed"])
        eps = _epsilon(report)
        seconds = " / ".join(f"{manifest['stages'][s]['seconds']:.0f}" if s in manifest["stages"] else "–"
                             for s in ("teacher", "label", "distill", "audit"))
    if target != "teacher" and privacy.get("mechanism") == "private-prediction":
        label = (f"private prediction, ε = {privacy['target_epsilon']:g}, {privacy['shards']} shards, "
                 f"{100 * privacy['query_fraction']:g}% of positions queried")
    missed = targets_missed(auc_upper, tpr, canary, pii, ratio)
    return [label, eps, "–" if lam is None or target == "teacher" else f"{lam:.1e}",
            f"{ppl:.2f} ({ratio:.2f}×)", auc, tpr_cell,
            "n/a" if canary is None else f"{canary:+.2f}", "n/a" if pii is None else f"{100 * pii:.1f}%",
            gate, missed, seconds]


# Issue 17's targets for the default LM run's student: AUC (upper 95% bound, as the gate reads it) <= 0.60,
# TPR at 1% FPR <= 3%, worst canary <= 2 bits above its baseline, PII exact match 0, perplexity <= 1.2x the teacher's.
TARGETS = {"auc": 0.60, "tpr": 0.03, "canary": 2.0, "pii": 0.0, "ratio": 1.2}


def targets_missed(auc_upper: float | None, tpr: float | None, canary: float | None, pii: float | None,
                   ratio: float) -> str:
    """Which of :data:`TARGETS` a row misses, and by how much ("none" when it meets them all)."""
    misses = []
    if auc_upper is not None and auc_upper > TARGETS["auc"]:
        misses.append(f"AUC +{auc_upper - TARGETS['auc']:.3f}")
    if tpr is not None and tpr > TARGETS["tpr"]:
        misses.append(f"TPR +{100 * (tpr - TARGETS['tpr']):.1f} pts")
    if canary is not None and canary > TARGETS["canary"]:
        misses.append(f"canary +{canary - TARGETS['canary']:.2f} bits")
    if pii is not None and pii > TARGETS["pii"]:
        misses.append(f"PII +{100 * pii:.1f}%")
    if ratio > TARGETS["ratio"]:
        misses.append(f"perplexity +{ratio - TARGETS['ratio']:.2f}×")
    return ", ".join(misses) or "none"


HEADER = ["model", "ε", "mean λ", "test perplexity (× teacher)", "reference attack AUC [95% CI] (and with the public "
          "model as the reference)", "TPR @ 1% FPR",
          "worst canary above baseline (bits)", "PII exact match", "gate (the spec's)", "issue-17 targets missed",
          "stage seconds (teacher / label / distill / audit)"]


def table(rows: list[tuple[str, Path | None, str | None]]) -> str:
    """The markdown table: the teacher first (from the first finished plain or other run), then each row."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    finished = [(label, folder) for label, folder, _ in rows if folder is not None and (folder / "report.json").is_file()]
    teacher_from = next((f for label, f in finished if label == "plain KD"), finished[0][1] if finished else None)
    body = []
    if teacher_from is not None:
        report = json.loads((teacher_from / "report.json").read_text())
        manifest = json.loads((teacher_from / "manifest.json").read_text())
        body.append(row_cells("undefended teacher", report, manifest, "teacher"))
    for label, folder, why in rows:
        if folder is None or not (folder / "report.json").is_file():
            body.append([label] + ["–"] * (len(HEADER) - 4) + [f"not run ({why or 'no finished run folder'})", "–", "–"])
            continue
        report = json.loads((folder / "report.json").read_text())
        body.append(row_cells(label, report, json.loads((folder / "manifest.json").read_text()), "student"))
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="pii-corpus", help="built-in LM corpus ([data] builtin)")
    parser.add_argument("--spec", default="examples/pii-corpus.toml", help="base spec (its [data] builtin is replaced)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/lm-privacy-utility"))
    parser.add_argument("--rows", nargs="+", default=["plain", "pp", "dp-synth"], choices=["plain", "pp", "dp-synth"])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 2.0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--query-fraction", type=float, default=0.05)
    parser.add_argument("--dp-synth", default=None, help="JSON spec overrides of the DP synthetic transfer row")
    parser.add_argument("--existing", action="store_true", help="rebuild the table from finished run folders only")
    add_docs_flag(parser)
    args = parser.parse_args()
    base = tomllib.loads(Path(args.spec).read_text())
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, Path | None, str | None]] = []
    first_pp: Path | None = None
    for label, name, overrides, why in planned_rows(args):
        folder = args.runs_dir / f"{args.corpus}-{name}"
        if overrides is not None and not args.existing:
            try:
                text = spec_for(base, args.corpus, f"{args.corpus}-{name}", overrides)
            except (ConfigError, ValueError) as error:
                done.append((label, None, f"spec does not validate: {str(error).splitlines()[0]}"))
                continue
            seconds = run_one(text, folder, seed_from=first_pp if name.startswith("pp-") else None)
            print(f"{label}: {seconds:.0f} s wall", flush=True)
        if name.startswith("pp-") and first_pp is None:
            first_pp = folder
        done.append((label, folder, why))
    text = table(done)
    print(text)
    publish(args, "lm-privacy-utility.md", f"lm-privacy-utility-{args.corpus}", text)


if __name__ == "__main__":
    main()
