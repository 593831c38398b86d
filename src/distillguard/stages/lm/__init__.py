"""The causal language-model track's stages (teacher → label → distill → audit → export).

Same mechanics as the classifier stages (:func:`distillguard.stages.common.execute_stage`:
fingerprint, skip when fresh, staged folder, manifest record); :mod:`distillguard.stages.dispatch`
picks these when ``[teacher] kind = "causal-lm"``. teacher/, student/ and deploy/ are
Hugging Face folders.
"""
