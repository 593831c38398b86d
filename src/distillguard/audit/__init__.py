"""Membership-inference audit: signals from logits, attacks, metrics, empirical ε bounds, shadows.

The maths (``attacks``, ``signals``, ``metrics``, ``epsilon``, ``empirical_epsilon``,
``exchangeability``, ``utility``) is pure numpy/scipy and reads no file. Around it:
``shadows``/``pipelines``/``pate_shadows`` replay the defended pipeline, ``placement``
decides where the shadows run (this process, torchrun ranks, Ray), ``classifier_audit``
puts the classifier track's audit together from a run folder, and ``scores`` is the
per-record score table and attack summary both tracks write. Import the submodules
directly.
"""
