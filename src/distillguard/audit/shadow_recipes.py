"""How the shadow teachers and students are trained: as the real pipeline (``"replay"``) or to the last epoch (``"plain"``).

The real teacher and student keep their best validation epoch; an auditor who replays
the spec's recipe without that checkpoint selection trains somewhat different shadows,
and those may calibrate an attack better (docs/strongest-attack.md). ``[audit]
shadow_recipe = "auto"`` trains both, the teachers once (the stacked training keeps the
best-validation snapshot and the last epoch of every shadow teacher) and the students
twice (each recipe's students distilled from that recipe's teachers), and the audit keeps
per target the recipe chosen leave-one-out on the shadows (audit/selection.py
``select_recipe``).
"""

from __future__ import annotations

from distillguard.attack_names import SELECTED_ATTACK
from distillguard.config import Spec
from distillguard.errors import ConfigError

#: Prefix of the "plain" recipe's logits beside the replay's, when one training yields both.
PLAIN = "plain:"


def shadow_recipe(spec: Spec) -> str:
    """What the shadows train as, from ``[audit] shadow_recipe``: "replay", "plain" or "both".

    "replay" keeps each shadow teacher's and student's best validation epoch, as the real
    pipeline; "plain" the last epoch; "both" (``"auto"``) trains the teachers once for both
    and the students twice, and the audit keeps, per target, the recipe whose shadows
    calibrate the strongest attack better on held-out shadows (audit/classifier_audit.py).
    "auto" is "replay" where the recipes cannot differ (no validation slice anywhere), where
    no "strongest" attack runs to choose, and for the teachers that replay differently
    (PATE, ensembles, Split-AI), which "plain" does not cover.
    """
    mode, teacher = spec.audit.shadow_recipe, spec.teacher
    if spec.privacy.mechanism == "pate" or teacher.ensemble > 1 or teacher.split_ai is not None:
        if mode == "plain":
            raise ConfigError('[audit] shadow_recipe = "plain" covers a single teacher (plain, HAMP or DP-SGD); '
                              "this spec's teacher is a PATE, ensemble or Split-AI teacher: use \"replay\" or \"auto\"")
        return "replay"
    selects = (spec.privacy.mechanism != "dp-sgd" and teacher.val_fraction > 0) or spec.student.val_fraction > 0
    if not selects or (mode == "auto" and SELECTED_ATTACK not in spec.audit.attacks):
        return "replay"
    return "both" if mode == "auto" else mode
