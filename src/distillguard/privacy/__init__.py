"""Pure privacy maths: mechanisms' noise and their (ε, δ) accounting, no training, no I/O.

As Opacus keeps ``accountants/analysis`` apart from its engine, the numbers a report
states as a guarantee are computed here, where they can be read and tested alone:

* :mod:`~distillguard.privacy.delta`: the default δ of a run with n private records.
* :mod:`~distillguard.privacy.dp_sgd`: ε of DP-SGD (PRV or RDP accountant) and the σ
  that reaches a target ε.
* :mod:`~distillguard.privacy.rdp`: Rényi-DP orders and the RDP → (ε, δ) conversion.
* :mod:`~distillguard.privacy.aggregation`: PATE's vote histogram, GNMax and
  Confident-GNMax (the noisy mechanisms whose cost the next modules bound).
* :mod:`~distillguard.privacy.pate_rdp`: data-independent RDP of GNMax and of the
  threshold test, composed into a PATE (ε, δ).
* :mod:`~distillguard.privacy.pate_data_dependent`: the data-dependent analysis of
  Papernot et al. 2018 (not itself private).
* :mod:`~distillguard.privacy.pate_record`: the report's privacy block of a PATE run.
"""
