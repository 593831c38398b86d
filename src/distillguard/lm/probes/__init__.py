"""Memorization probes for causal language models.

Each probe is a pure scoring function (numbers in, numbers out) plus a thin runner that
takes a Hugging Face causal LM and its tokenizer:

- :mod:`.scoring`: token log-probs of texts, batched and masked; candidates are scored
  tokenized jointly with their prefix.
- :mod:`.exposure`: canary exposure (Carlini et al. 2019); :mod:`.references` draws its
  references, controlled for the canary's token count.
- :mod:`.pii`: PII completion (Lukas et al. 2023).
- :mod:`.extraction`: sampled extraction (Carlini et al. 2021), k-extractability
  (Carlini et al. 2022), repetition divergence (Nasr et al. 2023); :mod:`.ngrams` is the
  verbatim-substring index they share.
- :mod:`.mia`: LM membership scores ``loss``, ``zlib``, ``min_k``, ``min_k_pp``,
  ``reference`` (MIMIR, Duan et al. 2024).

Runners return counts, rates and bits only: never a secret, PII value or generated text.
"""

from __future__ import annotations

from distillguard.lm.probes.exposure import (
    ExposureResult,
    canary_exposure,
    exposure_by_rank,
    exposure_by_skew_normal,
    exposure_from_rank,
    max_exposure_by_rank,
    random_fillings,
    secret_rank,
)
from distillguard.lm.probes.extraction import (
    divergence_probe,
    extraction_metrics,
    extraction_probe,
    k_extractable,
    suffix_match,
    zlib_length,
)
from distillguard.lm.probes.mia import (
    distribution_moments,
    lm_attack_results,
    lm_membership_scores,
    loss_score,
    min_k_pp_score,
    min_k_score,
    reference_score,
    zlib_score,
)
from distillguard.lm.probes.references import References, draw_references, length_corrected_scores
from distillguard.lm.probes.ngrams import NgramIndex, char_units, ngram_hashes, private_ngram_hits
from distillguard.lm.probes.pii import contains_value, exact_match_rate, normalize, pii_completion, pii_prompts
from distillguard.lm.probes.scoring import (
    TokenLogProbs,
    continuation_ids,
    continuation_logprobs,
    encode,
    encode_bare,
    encode_prompts,
    score_token_ids,
    text_logprobs,
)

__all__ = [
    "ExposureResult",
    "NgramIndex",
    "References",
    "TokenLogProbs",
    "canary_exposure",
    "char_units",
    "contains_value",
    "continuation_ids",
    "continuation_logprobs",
    "distribution_moments",
    "divergence_probe",
    "draw_references",
    "encode",
    "encode_bare",
    "encode_prompts",
    "exact_match_rate",
    "exposure_by_rank",
    "exposure_by_skew_normal",
    "exposure_from_rank",
    "extraction_metrics",
    "extraction_probe",
    "k_extractable",
    "length_corrected_scores",
    "lm_attack_results",
    "lm_membership_scores",
    "loss_score",
    "max_exposure_by_rank",
    "min_k_pp_score",
    "min_k_score",
    "ngram_hashes",
    "normalize",
    "pii_completion",
    "pii_prompts",
    "private_ngram_hits",
    "random_fillings",
    "reference_score",
    "score_token_ids",
    "secret_rank",
    "suffix_match",
    "text_logprobs",
    "zlib_length",
    "zlib_score",
]
