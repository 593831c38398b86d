"""``--device``: what each name resolves to, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import run_cli
from distillguard import device
from distillguard.errors import ConfigError
from distillguard.models.classifiers import architecture, build_model
from distillguard.models.inference import predict_logits
from distillguard.train.loop import Recipe, fit


def test_cpu_and_auto_resolve_to_the_cpu_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("auto") == torch.device("cpu")


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device cuda: no CUDA device"):
        device.resolve("cuda")


def test_cuda_takes_the_local_rank_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device.resolve("cuda") == torch.device("cuda", 1)
    assert device.resolve("auto") == torch.device("cuda", 1)


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"--device 'tpu': expected one of cpu, cuda, auto"):
        device.resolve("tpu")


def test_cli_rejects_a_bad_device_before_writing_anything(tmp_path: Path) -> None:
    done = run_cli("run", "--run-dir", "out", "--device", "tpu", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --device 'tpu': expected one of cpu, cuda, auto"]
    assert not (tmp_path / "out" / "teacher").exists()


def test_training_returns_a_cpu_model_and_predictions_come_back_on_the_cpu() -> None:
    arch = architecture(kind="mlp", input_shape=(4,), n_classes=3, hidden=[8], channels=[])
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with device.use(torch.device("cpu")):
        model, log = fit(build_model(arch, seed=0), X, y, loss_fn=torch.nn.functional.cross_entropy,
                         recipe=Recipe(epochs=2, batch_size=8, lr=1e-2, weight_decay=0.0), seed=0)
    assert device.of(model) == torch.device("cpu") and len(log) == 2
    assert predict_logits(model, X).device == torch.device("cpu")
