"""MLP and small CNN classifiers, built from a plain architecture dict.

No batch norm or dropout: both would make per-example behaviour depend on the batch,
and shadow models are trained many-at-once with ``torch.func.vmap``, which needs
stateless modules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from distillguard.errors import ArtifactError
from distillguard.runs import atomic_write_json


class MLP(nn.Module):
    """Flat features → ReLU hidden layers → class logits."""

    def __init__(self, n_features: int, hidden: list[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B, C)
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Image (C, H, W) → 3x3 conv blocks (2x2 max-pool while the map is ≥ 4 wide) → MLP head."""

    def __init__(self, input_shape: tuple[int, ...], channels: list[int], hidden: list[int], n_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ArtifactError(f"cnn needs image-shaped inputs (channels, height, width); got input_shape {input_shape}")
        in_ch, height, width = input_shape
        blocks: list[nn.Module] = []
        for ch in channels:
            blocks += [nn.Conv2d(in_ch, ch, kernel_size=3, padding=1), nn.ReLU()]
            if min(height, width) >= 4:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_ch = ch
        self.input_shape = tuple(input_shape)
        self.features = nn.Sequential(*blocks)
        self.head = MLP(in_ch * height * width, hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) or (B, C, H, W) -> (B, classes)
        x = x.reshape(x.shape[0], *self.input_shape)
        return self.head(self.features(x))


class Ensemble(nn.Module):
    """T classifiers of one architecture answering as one: the log of their mean probabilities.

    A PATE teacher ensemble is stored this way, so the teacher folder loads like any other
    model and the audit can attack it: its "logits" are log((1/T)·Σ_t softmax(z_t)), whose
    softmax is the ensemble's averaged probability. The votes PATE aggregates are the
    members' own argmaxes (:meth:`member_logits`).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (T, B, C)
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, C)
        log_probs = torch.log_softmax(self.member_logits(x), dim=-1)  # (T, B, C)
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def ensemble_architecture(base: dict[str, Any], *, members: int) -> dict[str, Any]:
    """Architecture dict of an :class:`Ensemble` of ``members`` models of architecture ``base``."""
    return {"kind": "ensemble", "members": int(members), "base": dict(base),
            "input_shape": list(base["input_shape"]), "n_classes": base["n_classes"]}


def architecture(*, kind: str, input_shape: tuple[int, ...], n_classes: int, hidden: list[int], channels: list[int]) -> dict[str, Any]:
    """The JSON-able description ``build_model`` needs (stored as config.json)."""
    return {"kind": kind, "input_shape": list(input_shape), "n_classes": n_classes, "hidden": list(hidden), "channels": list(channels)}


def model_arch(cfg: Any, schema: Any) -> dict[str, Any]:
    """The architecture of a ``[teacher]`` / ``[student]`` section's model on ``schema``'s data."""
    if cfg.kind == "hf-text":
        from distillguard.models.text import text_architecture

        enc = schema.encoding
        return text_architecture(cfg.arch, max_length=enc["max_length"], n_classes=schema.n_classes,
                                 vocab_size=enc["vocab_size"], pad_id=enc["pad_id"], bos_id=enc.get("bos_id"))
    return architecture(kind=cfg.kind, input_shape=schema.input_shape, n_classes=schema.n_classes,
                        hidden=cfg.hidden, channels=cfg.channels)


def build_model(arch: dict[str, Any], *, seed: int) -> nn.Module:
    """Fresh model with parameters drawn from ``seed`` (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch["kind"] == "hf-text":
            from distillguard.models.text import build_text_classifier

            return build_text_classifier(arch)
        if arch["kind"] == "ensemble":
            return Ensemble([build_model(arch["base"], seed=seed + t) for t in range(int(arch["members"]))])
        if arch["kind"] == "split-ai":
            from distillguard.models.split_ai import SplitAI

            return SplitAI([build_model(arch["base"], seed=seed + t) for t in range(int(arch["members"]))],
                           l=int(arch["answer"]), n_keys=int(arch["n_keys"]))
        if arch["kind"] == "cnn":
            return SmallCNN(tuple(arch["input_shape"]), arch["channels"], arch["hidden"], arch["n_classes"])
        return MLP(math.prod(arch["input_shape"]), arch["hidden"], arch["n_classes"])


def save_model(model: nn.Module, folder: Path, *, arch: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` (architecture plus ``extra``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"))
    atomic_write_json(folder / "config.json", {"architecture": arch, **(extra or {})})


def load_model(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model folder written by :func:`save_model`; never unpickles."""
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; expected a distillguard model folder (config.json, model.safetensors)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        arch = config["architecture"]
        model = build_model(arch, seed=0)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{config_path}: not a distillguard model config ({error})") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise ArtifactError(f"{weights_path}: cannot read safetensors weights ({error})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0] + " " + (str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else "")
        raise ArtifactError(f"{weights_path}: weights do not match {config_path}: {first}") from None
    model.eval()
    return model, config
