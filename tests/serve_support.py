"""Serve tests' deploy folder built by hand (no training): an MLP with fixed weights, its schema and scaler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from distillguard.config.deploy import AUDITED_CLASSIFIER_OUTPUT, DeployConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.models.artifact import Classifier, save_classifier
from distillguard.models.classifiers import architecture, build_model
from distillguard.runs import sha256_file

FEATURES = ["age", "income", "visits", "score"]
CLASSES = ["low", "mid", "high"]


def make_deploy(folder: Path, *, release: dict | None = None, gate_passed: bool = True, **serving) -> Path:
    arch = architecture(kind="mlp", input_shape=(len(FEATURES),), n_classes=len(CLASSES), hidden=[8], channels=[])
    model = build_model(arch, seed=3)
    with torch.no_grad():  # larger weights: confident, distinct probabilities
        for p in model.parameters():
            p.mul_(3.0)
    scaler = Standardizer(np.array([40, 50_000, 3, 0.5], dtype=np.float32), np.array([10, 20_000, 2, 0.2], dtype=np.float32))
    clf = Classifier(model, arch, Schema(FEATURES, CLASSES, (len(FEATURES),)), scaler)
    limits = {**DeployConfig().serving_limits(), **serving}
    save_classifier(folder, clf, extra={"role": "student", "release": release or DeployConfig().release_policy(),
                                        "audited_output": AUDITED_CLASSIFIER_OUTPUT, "serving": limits})
    (folder / "manifest.json").write_text(json.dumps({
        "run": {"name": "hand"}, "student_sha256": sha256_file(folder / "model.safetensors"), "gate_passed": gate_passed}))
    return folder


def rows(n: int, seed: int = 0) -> list[dict]:
    gen = np.random.default_rng(seed)
    X = np.column_stack([gen.uniform(20, 70, n), gen.uniform(1e4, 1e5, n), gen.integers(0, 9, n), gen.uniform(0, 1, n)])
    return [dict(zip(FEATURES, map(float, r), strict=True)) for r in X]
