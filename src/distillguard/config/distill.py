"""``[distill]``: how the student learns from the teacher's released labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distillguard.config.base import Section


class DistillConfig(Section):
    temperature: float = Field(1.0, gt=0, description="Softmax temperature applied to stored logits (Hinton et al. 2015).")
    alpha: float = Field(0.0, ge=0, le=1, description="Weight of cross-entropy on the teacher's argmax labels.")
    loss: Literal["kl", "forward_kl", "reverse_kl", "jsd"] = Field(
        "kl", description='Classifiers: "kl". Causal LMs: "forward_kl" (= "kl", x T^2), "reverse_kl" or "jsd" '
                          "(generalized JSD with beta, as in TRL's GKD).")
    beta: float = Field(0.5, gt=0, lt=1, description="JSD(beta) interpolation weight (loss = \"jsd\").")
    top_k: int = Field(32, ge=1, description="causal-lm: teacher log-probabilities stored per token (plus the leftover).")
    hard_tokens: Literal["digits", "none"] = Field(
        "digits", description='causal-lm: "digits": wherever the transfer text\'s next token holds a digit, the '
                              "student learns that token (cross-entropy) instead of the teacher's labels, which is "
                              "where memorized numbers (secrets, phone and account numbers) live; \"none\": distill "
                              "every position.")

    def lm_loss(self) -> str:
        """The LM loss id (``"kl"`` means forward KL)."""
        return "forward_kl" if self.loss == "kl" else self.loss
