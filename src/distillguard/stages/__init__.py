"""The pipeline stages: each reads artifacts of the run folder and writes its own.

teacher → label → distill → audit → export. Each stage module has one entry function
``run_*_stage(spec, run)``; the shared mechanics (fingerprint, skip, staged folder,
manifest record) live in :mod:`distillguard.stages.common`.
"""
