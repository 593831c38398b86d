"""The causal language-model track: data, tokenizer, models, soft labels, KD losses, training.

One module per concept, as the folder list reads:

- :mod:`~distillguard.lm.data`: JSONL text roles, canaries and PII files (read, check, write).
- :mod:`~distillguard.lm.pii_corpus`: the built-in ``pii-corpus`` generator (seeded Faker).
- :mod:`~distillguard.lm.tokenizer`: byte-level BPE fitted on public text only, secret check.
- :mod:`~distillguard.lm.blocks`: texts to fixed-length token blocks.
- :mod:`~distillguard.lm.models`: tiny GPT-2 / Llama builders, Hugging Face folder save/load.
- :mod:`~distillguard.lm.softlabels`: the label stage's core (top-k Parquet shards, streamed).
- :mod:`~distillguard.lm.losses`: sparse (top-k + leftover) forward/reverse KL and JSD(β).
- :mod:`~distillguard.lm.train`: teacher fine-tuning and student distillation loops.
- :mod:`~distillguard.lm.prefix_guard`: flags transfer documents holding a canary's prefix.

Heavy imports (``transformers``, ``tokenizers``, ``faker``) happen inside the modules that
need them, so importing this package is cheap.
"""
