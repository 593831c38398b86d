"""The classifier track's audit: utility, membership attacks and canaries, teacher vs student.

The audit pool is the teacher's *trained* members (its validation slice was never
trained on) and as many nonmembers. Shadow pipelines replay teacher training *and*
distillation, so attacks on the student are calibrated on students; canaries live only
in the shadows, and give the one-run ε bound (Steinke et al. 2023) on replica 0.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from distillguard.attack_names import LABEL_ONLY_ATTACKS, SELECTED_ATTACK, strongest_attack
from distillguard.audit.empirical_epsilon import one_run_epsilon
from distillguard.audit.exchangeability import exchangeability_check
from distillguard.audit.canary_protocol import vulnerable_record_rows
from distillguard.audit.label_only import NoisePlan, label_only_scores, noise_setting, predicted_labels
from distillguard.audit.membership import score_canaries_leave_one_out, score_targets
from distillguard.audit.metrics import roc
from distillguard.audit.placement import Shadows, train_shadows
from distillguard.audit.record_risk import record_risk_columns, risk_summary
from distillguard.audit.scores import ScoreRows, summarize_attack
from distillguard.audit.selection import CRITERION, RECIPE_CRITERION, Configuration, select_recipe
from distillguard.audit.shadow_outputs import SHADOW_OUTPUTS, shadow_arrays
from distillguard.audit.shadows import build_pool
from distillguard.audit.signals import ReferenceSignals, TargetSignals
from distillguard.audit.utility import accuracy, agreement, mean_cross_entropy
from distillguard.checkpoints import CheckpointStore, failpoint
from distillguard.config import Spec
from distillguard.data import load_members, load_role, shard_numbers
from distillguard.data.softlabel_shards import read_query_ids
from distillguard.models.artifact import Classifier, load_classifier
from distillguard.runs import RunDir, read_json

TARGETS = ("teacher", "student")
EPSILON_DELTA = 1e-5


def audit_models(spec: Spec, run: RunDir, *, checkpoints: CheckpointStore | None = None
                 ) -> tuple[dict, ScoreRows, dict, dict[str, np.ndarray] | None, dict]:
    """Every number of the audit, the per-record scores, ROC curves, the shadow outputs and per-record risk.

    Reads the teacher's split, the student and teacher, the data roles and (with shadows)
    the recorded label queries; trains the shadows where ``[audit].backend`` says
    (:mod:`distillguard.audit.placement`), with resumable state in ``checkpoints``.

    Returns:
        (``metrics.json`` content, the rows of ``scores.parquet``, attack → {target: ROC curve},
        the arrays of ``shadow_outputs.npz`` (audit/shadow_outputs.py), or None without shadows,
        the columns of ``record_risk.parquet``).
    """
    models = {name: load_classifier(run / name)[0] for name in TARGETS}
    trained = np.asarray(read_json(run / "teacher" / "split.json")["train_ids"], dtype=np.int64)
    schema, pool, test = audit_data(spec, trained_ids=trained)
    metrics: dict = {"utility": utility(models, test.X, test.y)}
    plan = label_noise_plan(spec, pool.X, test.X)
    shadows = _train_shadows(spec, run, schema=schema, pool=pool, test=test, checkpoints=checkpoints,
                             extra_sets=plan.shadow_sets(pool.X) if plan is not None else None)
    if shadows is not None:
        replay = ("PATE: teachers on partitions of each shadow's half + noisy votes + student on the noisy labels"
                  if spec.privacy.mechanism == "pate" else "teacher training + labeling + distillation")
        if spec.teacher.split_ai is not None:
            replay = (f"Split-AI: {spec.teacher.split_ai.k} sub-teachers per shadow, exclusions drawn over the "
                      "shadow's own training set + labeling + distillation")
            if spec.teacher.split_ai.self_distill:
                replay = (f"Split-AI self-distillation: {spec.teacher.split_ai.k} sub-teachers per shadow, exclusions "
                          "drawn over the shadow's own training set, which its non-seeing sub-teachers label and its "
                          "student distills on (no public row)")
        metrics["shadows"] = {"count": spec.audit.shadows, "replay": replay,
                              "canaries": 0 if shadows.canaries is None else len(shadows.canaries),
                              "canary_kind": spec.audit.canary_kind if shadows.canaries is not None else None,
                              "outputs": f"audit/{SHADOW_OUTPUTS}", "recipe": spec.audit.shadow_recipe,
                              "recipes_trained": ["replay", "plain"] if shadows.plain else [shadows.recipe]}
    signals = {target: TargetSignals(clf.logits(pool.X), pool.y, clf.logits(test.X), test.y)
               for target, clf in models.items()}
    return attack_models(spec, metrics, schema=schema, pool=pool, population_labels=test.y, signals=signals,
                         shadows=shadows, models=models, plan=plan)


def label_noise_plan(spec: Spec, pool_X: np.ndarray, test_X: np.ndarray) -> NoisePlan | None:
    """label_noise's noisy copies of the pool (audit/label_only.py), when the audit runs it."""
    cfg = spec.audit
    return (NoisePlan.build(pool_X, test_X, copies=cfg.label_only_queries, seed=spec.run.seed)
            if "label_noise" in cfg.attacks else None)


def audit_data(spec: Spec, *, trained_ids: np.ndarray | None, loaded: tuple | None = None) -> tuple:
    """(schema, the audit pool, the test split): trained members (all when ``trained_ids`` is None) and nonmembers.

    ``loaded``: the ``(schema, members)`` :func:`load_members` gave, when the caller has them.
    """
    seed = spec.run.seed
    schema, members = loaded if loaded is not None else load_members(spec.data, seed=seed)
    nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=seed)
    test = load_role(spec.data, "test", schema=schema, seed=seed)
    if trained_ids is not None:
        members = members.subset(np.flatnonzero(np.isin(members.ids, trained_ids)))
    return schema, build_pool(members, nonmembers, seed=seed), test


def attack_models(spec: Spec, metrics: dict, *, schema, pool, population_labels: np.ndarray | None,
                  signals: dict[str, TargetSignals], shadows: Shadows | None, seed_as: dict[str, str] | None = None,
                  models: dict | None = None, plan: NoisePlan | None = None
                  ) -> tuple[dict, ScoreRows, dict, dict[str, np.ndarray] | None, dict]:
    """Attack each target's ``signals`` on ``pool`` (shadows keyed by target), completing ``metrics``.

    The part of the audit that does not care where the models come from: the pipeline's
    teacher and student, or the one model ``distillguard scan`` brings. ``seed_as`` maps a
    target to the name its bootstrap is seeded by (audit/scores.py). ``models`` (target ->
    anything with ``logits(X)``) are queried by the label-only attacks, with ``plan``
    their noisy copies; without them those attacks do not run. Returns what
    :func:`audit_models` returns.
    """
    seed = spec.run.seed
    metrics.setdefault("warnings", [])
    metrics["exchangeability"], warning = exchangeability_check(pool.X, pool.is_member, seed=seed)
    if warning:
        metrics["warnings"].append(warning)
    audit = _Audit(spec, pool, population_labels, shadows, seed_as, plan)
    for target, target_signals in signals.items():
        audit.attack_target(target, target_signals)
        if models is not None and target in models:
            audit.label_only(target, models[target])
    metrics["attacks"] = audit.results
    metrics["populations"] = {"all": {"n_members": int(pool.is_member.sum()), "n_nonmembers": int((~pool.is_member).sum())}}
    if audit.selections:
        metrics["strongest"] = audit.selections
    if audit.canary_protocol:
        metrics["canary_protocol"] = audit.canary_protocol
    if audit.epsilons:
        shown = next((e for e in audit.epsilons if e["target"] == "student"), audit.epsilons[-1])
        metrics["empirical_epsilon"] = {**shown, "by_target": audit.epsilons}
    outputs = None
    if shadows is not None:  # each target's chosen recipe's shadows, and which recipe that was
        chosen = replace(shadows, logits={**shadows.logits, **audit.shadow_logits}, plain=None)
        outputs = shadow_arrays(pool_ids=pool.example_ids, pool_labels=pool.y, pool_is_member=pool.is_member,
                                population_labels=population_labels, shadows=chosen, targets=audit.target_signals,
                                label_noise=plan)
        outputs.update({f"{target}_shadow_recipe": np.asarray(recipe) for target, recipe in audit.recipes.items()})
        if "shadows" in metrics:
            metrics["shadows"]["recipe_chosen"] = dict(audit.recipes)
    risk_columns, metrics["record_risk"] = _record_risk(schema.classes, pool, audit.pool_scores, list(signals))
    return metrics, audit.rows, audit.curves, outputs, risk_columns


def _record_risk(classes: list, pool, pool_scores: dict, targets: list[str]) -> tuple[dict, list[dict]]:
    """The per-record risk table and, per target, the strongest attack's counts and riskiest classes."""
    columns = record_risk_columns(example_ids=pool.example_ids, labels=pool.y, classes=classes,
                                  is_member=pool.is_member, scores=pool_scores)
    summaries = []
    for target in targets:
        attack = strongest_attack([a for t, a in pool_scores if t == target])
        if attack is not None:
            summaries.append(risk_summary(labels=pool.y, classes=classes, is_member=pool.is_member,
                                          scores=pool_scores[(target, attack)], target=target, attack=attack))
    return columns, summaries


def _train_shadows(spec: Spec, run: RunDir, *, schema, pool, test, checkpoints, extra_sets) -> Shadows | None:
    """The shadow pipelines, replaying the release from the recorded label queries; None without shadows."""
    if not spec.audit.shadows:
        return None
    self_distill = spec.teacher.split_ai is not None and spec.teacher.split_ai.self_distill
    if self_distill or spec.transfer.synthetic is not None:  # each shadow's own inputs or generator
        shadows = train_shadows(spec, schema=schema, pool=pool, transfer_X=np.zeros((0, pool.X.shape[1]), np.float32),
                                population_X=test.X, population_y=test.y, checkpoints=checkpoints,
                                extra_sets=extra_sets)
        failpoint("audit/shadows-trained")
        return shadows
    transfer = load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
    kept_ids = read_query_ids(run / "softlabels")  # every record the teacher was asked (the guard's survivors)
    transfer = transfer.subset(np.flatnonzero(np.isin(transfer.ids, kept_ids)))
    shadows = train_shadows(spec, schema=schema, pool=pool, transfer_X=transfer.X, population_X=test.X,
                            population_y=test.y, checkpoints=checkpoints,
                            transfer_blocks=shard_numbers(transfer.ids, spec.run.shard_rows), extra_sets=extra_sets)
    failpoint("audit/shadows-trained")
    return shadows


class _Audit:
    """Attacks each target in turn and collects results, score rows, curves, selections and ε bounds."""

    def __init__(self, spec: Spec, pool, population_labels: np.ndarray | None, shadows: Shadows | None,
                 seed_as: dict[str, str] | None = None, plan: NoisePlan | None = None) -> None:
        self.spec, self.pool, self.population_labels, self.shadows = spec, pool, population_labels, shadows
        self.seed_as = seed_as or {}
        self.plan = plan  # label_noise's noisy copies of the pool, or None
        self.attacks = [a for a in spec.audit.attacks if a not in LABEL_ONLY_ATTACKS]  # those that read logits
        self.rows, self.results, self.curves = ScoreRows(), [], {}
        self.epsilons: list[dict] = []
        self.canary_protocol: list[dict] = []
        self.selections: dict[str, dict] = {}
        self.target_signals: dict[str, TargetSignals] = {}
        self.pool_scores: dict[tuple[str, str], np.ndarray] = {}  # (target, attack) -> scores on the pool
        self.shadow_logits: dict = {}  # target -> the ShadowLogits of its chosen recipe
        self.recipes: dict[str, str] = {}  # target -> that recipe

    def attack_target(self, target: str, signals: TargetSignals) -> None:
        spec, pool, shadows = self.spec, self.pool, self.shadows
        self.target_signals[target] = signals
        reference, chosen = None, None
        if shadows is not None:
            chosen = self.choose(target)
            logits = self.shadow_logits[target]
            reference = ReferenceSignals(logits.pool, shadows.membership, pool.y, logits.population,
                                         self.population_labels)
        for name, scores in score_targets(self.attacks, spec.audit, signals, reference, chosen).items():
            self.record(name, target, "all", scores, pool.is_member, ids=pool.example_ids, canary=False, chosen=chosen)
        if shadows is not None and shadows.canaries is not None and self.attacks:
            self.epsilons.append(self.canaries(target, chosen))

    def label_only(self, target: str, model) -> None:
        """The label-only attacks (audit/label_only.py) on the pool: they query ``model`` for classes only."""
        names = [a for a in self.spec.audit.attacks if a in LABEL_ONLY_ATTACKS]
        if not names:
            return
        setting = None
        if self.plan is not None:
            calibrated = self.shadows is not None and self.shadows.membership.any()  # reference models: all out
            logits = self.shadow_logits.get(target, self.shadows.logits[target]) if calibrated else None
            setting = noise_setting(self.plan, target=target, shadow_pool_logits=None if logits is None else logits.pool,
                                    shadow_extra=None if logits is None else logits.extra,
                                    membership=None if logits is None else self.shadows.membership, labels=self.pool.y)
        scored = label_only_scores(names, self.plan, predict=lambda X: predicted_labels(model.logits(X)), X=self.pool.X,
                                   labels=self.pool.y, sigma=setting["sigma"] if setting else 0.0)
        for name, (scores, queries) in scored.items():
            extra = {"queries_per_record": queries, **({"noise": setting} if name == "label_noise" else {})}
            self.record(name, target, "all", scores, self.pool.is_member, ids=self.pool.example_ids, canary=False,
                        chosen=None, extra=extra)

    def choose(self, target: str) -> Configuration | None:
        """The shadow recipe and the "strongest" configuration, chosen leave-one-out on this target's shadows only.

        Every attack on ``target`` is then calibrated on the chosen recipe's shadows
        (``self.shadow_logits``); without "strongest" the shadows' own recipe is kept.
        """
        variants = self.shadows.variants(target)
        recipe = self.shadows.recipe
        if SELECTED_ATTACK not in self.spec.audit.attacks:
            self.shadow_logits[target], self.recipes[target] = variants[recipe], recipe
            return None
        recipe, chosen, table, by_recipe = select_recipe(
            {name: (logits.pool, logits.population) for name, logits in variants.items()},
            membership=self.shadows.membership, labels=self.pool.y, population_labels=self.population_labels)
        self.shadow_logits[target], self.recipes[target] = variants[recipe], recipe
        self.selections[target] = {"chosen": chosen.to_dict(), "criterion": CRITERION, "candidates": table,
                                   "shadow_recipe": {"mode": self.spec.audit.shadow_recipe, "chosen": recipe,
                                                     "criterion": RECIPE_CRITERION, "by_recipe": by_recipe}}
        return chosen

    def record(self, name: str, target: str, population: str, scores, is_member, *, ids, canary: bool,
               chosen: Configuration | None, extra: dict | None = None) -> None:
        row = summarize_attack(scores, is_member, spec=self.spec, target=target, attack=name, population=population,
                               seed_target=self.seed_as.get(target))
        row.update(extra or {})
        if name == SELECTED_ATTACK and chosen is not None:
            row["configuration"] = chosen.to_dict()
            row["shadow_recipe"] = self.recipes.get(target)
        self.results.append(row)
        self.rows.add(ids, target, name, scores, is_member, canary=canary)
        if population == "all":
            self.pool_scores[(target, name)] = scores
        key = target if population == "all" else f"{target} (canaries)"
        self.curves.setdefault(name, {})[key] = roc(scores, is_member)

    def canaries(self, target: str, chosen: Configuration | None) -> dict:
        """Canary metrics over held-out replicas, and the one-run ε bound on replica 0."""
        spec, canaries, logits = self.spec, self.shadows.canaries, self.shadow_logits[target]
        S, K = canaries.included.shape
        scored = score_canaries_leave_one_out(
            self.attacks, spec.audit, logits=logits.canaries, labels=canaries.y, included=canaries.included,
            population_logits=logits.population, population_labels=self.population_labels, chosen=chosen,
        )
        ids = [f"canary:{k}@replica{s}" for s in range(S) for k in range(K)]
        for name, (scores, included) in scored.items():
            self.record(name, target, "canaries", scores, included, ids=ids, canary=True, chosen=chosen)
        attack = strongest_attack(scored, down_to="loss") or self.attacks[0]
        self.canary_protocol += vulnerable_record_rows(scored[attack], canaries.kind, target=target, attack=attack,
                                                       summarize=lambda sc, inc, kind: summarize_attack(
                                                           sc, inc, spec=spec, target=target, attack=attack,
                                                           population=f"canaries:{kind}",
                                                           seed_target=self.seed_as.get(target)))
        eps = one_run_epsilon(
            attack, spec.audit, logits=logits.canaries, labels=canaries.y, included=canaries.included,
            audited_scores=scored[attack][0][:K], population_logits=logits.population,
            population_labels=self.population_labels, delta=EPSILON_DELTA, chosen=chosen,
        )
        return {"target": target, "replica": 0, **eps}


def utility(models: dict[str, Classifier], X: np.ndarray, y: np.ndarray) -> dict:
    """Test accuracy and loss of teacher and student, their gap and their agreement on (n, d) ``X``."""
    logits = {name: clf.logits(X) for name, clf in models.items()}
    out = {name: {"test_accuracy": accuracy(z, y), "test_loss": mean_cross_entropy(z, y)} for name, z in logits.items()}
    out["accuracy_gap"] = out["teacher"]["test_accuracy"] - out["student"]["test_accuracy"]
    out["agreement"] = agreement(logits["teacher"], logits["student"])
    out["n_test"] = int(len(y))
    return out
