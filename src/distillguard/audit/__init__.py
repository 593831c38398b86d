"""Membership-inference audit: signals from logits, attacks, metrics and empirical ε bounds.

Pure maths only (numpy/scipy); nothing here reads or writes files. Import the submodules
directly (``distillguard.audit.attacks``, ``.metrics``, ``.epsilon``, ``.signals``).
"""
