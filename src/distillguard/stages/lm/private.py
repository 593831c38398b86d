"""The LM stages' side of ``[softlabels] private_prediction``: the ensemble, the labeller, the privacy block.

The teacher stage trains the public model (on the transfer documents the leak and prefix
guards keep) and one teacher per member shard under ``teacher/`` (owner-only, like the
teacher); the label stage sizes the mixing ball from the target ε and the number of
queried positions, labels with :class:`~distillguard.lm.private_prediction.PrivateLabeller`
and records the privacy block that report.json carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data.text import load_texts
from distillguard.errors import ConfigError
from distillguard.privacy.delta import default_delta
from distillguard.seeding import derive_seed

MECHANISM = "private-prediction"


def train_teacher_ensemble(spec: Spec, folder: Path, tokenizer, members: list[str], public_texts: list[str]
                           ) -> dict[str, Any]:
    """Public model (on ``public_texts``: the transfer documents the guards keep) and shard teachers into ``folder``."""
    from distillguard.lm.models import build_causal_lm, load_causal_lm, save_causal_lm
    from distillguard.lm.private_prediction import train_private_ensemble

    pp, seed, t = spec.softlabels.private_prediction, spec.run.seed, spec.teacher

    def base():
        if t.path is not None:
            return load_causal_lm(t.path)[0]
        return build_causal_lm(t.arch.model_config_dict(), tokenizer=tokenizer, seed=derive_seed(seed, "public", "init"))

    recipe = {"epochs": t.epochs, "lr": t.lr, "batch_size": t.batch_size, "weight_decay": t.weight_decay}
    with progress.task("teacher: public model and shard teachers", pp.shards + 1) as advance:
        return train_private_ensemble(base, tokenizer, members=members, public_texts=public_texts,
                                      shards=pp.shards, recipe=recipe, seed=seed, folder=folder,
                                      save=lambda model, where: save_causal_lm(model, tokenizer, where),
                                      on_model=lambda name: advance(1))


def check_one_process() -> None:
    """Private prediction runs in one process: refuse torchrun before any model trains (the teacher stage)."""
    if distributed.world().size > 1:
        raise ConfigError("[softlabels].private_prediction: the label stage runs in one process (its accountant "
                          "counts every query); run it without torchrun, or set private_prediction = false "
                          "(plain KD)")


def count_queries(blocks: list[list[int]], *, fraction: float, seed: int) -> int:
    """Positions the label stage will answer privately (public: token ids and the seed alone)."""
    from distillguard.lm.private_prediction import query_mask

    return sum(int(query_mask(b, fraction=fraction, seed=seed).sum()) for b in blocks if b)


def private_labeller(spec: Spec, teacher_folder: Path, blocks: list[list[int]]):
    """(labeller, its plan): the shard teachers and public model loaded, the ball sized for the target ε."""
    from distillguard.lm.models import load_causal_lm
    from distillguard.lm.private_prediction import PUBLIC_DIR, SHARDS_DIR, PrivateLabeller
    from distillguard.privacy.private_prediction import query_epsilon_for_target, radius_for_query_epsilon

    check_one_process()
    pp, seed = spec.softlabels.private_prediction, spec.run.seed
    delta = pp.delta if pp.delta is not None else default_delta(len(load_texts(spec.data, "members", seed=seed)))
    query_seed = derive_seed(seed, "private-prediction")  # the labeller's: it draws the same positions
    queries = count_queries(blocks, fraction=pp.query_fraction, seed=query_seed)
    eps_q = query_epsilon_for_target(pp.epsilon, max(queries, 1), delta=delta)
    radius = radius_for_query_epsilon(eps_q, pp.shards)
    shards = [load_causal_lm(teacher_folder / SHARDS_DIR / f"shard-{i:03d}")[0] for i in range(pp.shards)]
    public = load_causal_lm(teacher_folder / PUBLIC_DIR)[0]
    for model in (*shards, public):
        model.eval()
    labeller = PrivateLabeller(shards, public, radius=radius, sample_weight=pp.sample_weight,
                               query_fraction=pp.query_fraction, seed=query_seed)
    return labeller, {"delta": delta, "queries": queries, "query_epsilon": eps_q, "radius": radius}


def privacy_record(spec: Spec, labeller, plan: dict[str, Any]) -> dict[str, Any]:
    """The label stage's ``privacy`` block (report.json's): the data-independent ε, the data-dependent one labelled."""
    import numpy as np

    from distillguard.privacy.private_prediction import composed_epsilon
    from distillguard.privacy.rdp import DEFAULT_ALPHAS, rdp_to_dp

    pp = spec.softlabels.private_prediction
    if labeller.queries != plan["queries"]:
        raise RuntimeError(f"private prediction answered {labeller.queries} queries but planned {plan['queries']}")
    epsilon, alpha = composed_epsilon(plan["query_epsilon"], labeller.queries, delta=plan["delta"])
    record = {"mechanism": MECHANISM, "epsilon": epsilon, "delta": plan["delta"],
              "analysis": "data-independent: each answered position samples one token from the shard teachers' "
                          "mixtures, each within a max-divergence ball of radius b around the public model: "
                          "eps_q = log(1 + (e^(2b) - 1) / shards) per query (pure DP), composed in RDP over the "
                          "queries; per document (a secret in r documents is covered only by group privacy, r * eps_q per query)",
              "shards": pp.shards, "target_epsilon": pp.epsilon, "queries": labeller.queries,
              "query_fraction": pp.query_fraction, "query_epsilon": plan["query_epsilon"], "radius": plan["radius"],
              "rdp_order": alpha, "sample_weight": pp.sample_weight,
              "mean_lambda": labeller.lambda_sum / max(labeller.queries * pp.shards, 1)}
    if labeller.queries:
        rdp = np.minimum(labeller.dd_sum, DEFAULT_ALPHAS * labeller.dd_square_sum / 2)
        dd_epsilon, _ = rdp_to_dp(DEFAULT_ALPHAS, rdp, delta=plan["delta"])
        record["data_dependent"] = {"epsilon": dd_epsilon, "max_query_epsilon": labeller.dd_max,
                                    "note": "data-dependent: computed from the realised mixtures against the worst "
                                            "neighbour in the ball; it depends on the private data and is not "
                                            "itself private (not a guarantee)"}
    return record
