"""The one catalogue of membership-attack names, and which attack counts as strongest.

The spec's schema, the attack registry (:mod:`distillguard.audit.attacks`), the LM
probes and the audit stage all read their names from here, so a new attack is named in
one place. Foundation layer: this module imports nothing from distillguard.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, get_args

#: One statistic of the target's own output; no shadow models needed.
THRESHOLD_ATTACKS: tuple[str, ...] = ("loss", "confidence", "entropy", "modified_entropy")
#: Calibrated on shadow pipelines (LiRA, Carlini et al. 2022; RMIA, Zarifzadeh et al. 2024).
SHADOW_ATTACKS: tuple[str, ...] = ("lira_online", "lira_offline", "rmia")
#: Attacks that see only the predicted label, never a probability (audit/label_only.py): the gap
#: attack (Yeom et al. 2018, one query per record) and the noise-robustness attack (Choquette-Choo
#: et al. 2021, ``[audit] label_only_queries`` noisy copies plus the record itself). They query the
#: model, so they are scored on the audit pool only, and never enter the "strongest" selection.
LABEL_ONLY_ATTACKS: tuple[str, ...] = ("label_gap", "label_noise")
#: The shadow attack whose configuration (LiRA online/offline × variance, RMIA variants) is
#: chosen by leave-one-out on the shadow pipelines, never on the audited model (audit/selection.py).
SELECTED_ATTACK = "strongest"
#: Every attack on a classifier: the registry's order, the selected one, then the label-only ones.
CLASSIFIER_ATTACKS: tuple[str, ...] = (*THRESHOLD_ATTACKS, *SHADOW_ATTACKS, SELECTED_ATTACK, *LABEL_ONLY_ATTACKS)
#: Attacks on a causal language model (MIMIR's loss, zlib, min-k%, min-k%++, reference).
LM_ATTACKS: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_pp", "reference")

AttackName = Literal["loss", "confidence", "entropy", "modified_entropy", "lira_online", "lira_offline", "rmia",
                     "strongest", "label_gap", "label_noise", "zlib", "min_k", "min_k_pp", "reference"]
#: Every attack name a spec accepts (the values of :data:`AttackName`, in its order).
ALL_ATTACKS: tuple[str, ...] = get_args(AttackName)

#: Strongest first: the configuration chosen on the shadows, the calibrated attacks, then the
#: single-model statistics, then the label-only attacks (less information per query). The gate's default attack is the first of these that the audit
#: runs; the one-run ε bound on the canaries takes the first one down to ``loss`` (see
#: :func:`strongest_attack`).
STRONGEST: tuple[str, ...] = ("strongest", "lira_online", "rmia", "lira_offline", "reference", "min_k_pp", "loss", "confidence",
                              "entropy", "modified_entropy", "label_noise", "label_gap", "zlib", "min_k")


def strongest_attack(names: Collection[object], *, down_to: str | None = None) -> str | None:
    """The first attack of :data:`STRONGEST` among ``names``, or None if there is none.

    ``down_to`` stops the search after that attack, for callers that would rather fall back
    on a choice of their own than use a weaker statistic.
    """
    ranked = STRONGEST if down_to is None else STRONGEST[:STRONGEST.index(down_to) + 1]
    return next((name for name in ranked if name in names), None)
