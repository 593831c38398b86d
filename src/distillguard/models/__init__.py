"""Classifier models and their on-disk form (safetensors + config.json)."""

from distillguard.models.classifiers import build_model, load_model, save_model

__all__ = ["build_model", "load_model", "save_model"]
