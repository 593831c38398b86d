"""Which accelerator the stages compute on: ``--device cpu | cuda | auto``.

The device is a property of the process, not of the run: a run started on a GPU may be
resumed on a CPU, so it is not part of any stage's fingerprint (results on the two agree
to float tolerance, not bit for bit). Training loops and predictions ask
:func:`current` for it; data stay on the CPU and move to the device batch by batch, so
the transfer set never has to fit in accelerator memory.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from distillguard.errors import ConfigError

DeviceName = Literal["cpu", "cuda", "auto"]
DEVICE_NAMES: tuple[str, ...] = ("cpu", "cuda", "auto")

_current: contextvars.ContextVar[torch.device] = contextvars.ContextVar("device", default=torch.device("cpu"))


def resolve(name: str) -> torch.device:
    """``auto`` is CUDA when one is visible, else the CPU; ``cuda`` without one is an error.

    Under torchrun each process takes the GPU of its ``LOCAL_RANK``.
    """
    if name not in DEVICE_NAMES:
        raise ConfigError(f"--device {name!r}: expected one of {', '.join(DEVICE_NAMES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False); "
                          "use --device cpu or auto")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def current() -> torch.device:
    return _current.get()


@contextmanager
def use(device: torch.device) -> Iterator[torch.device]:
    """Compute on ``device`` while the block runs."""
    token = _current.set(device)
    try:
        yield device
    finally:
        _current.reset(token)


def of(module: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on (the CPU for a module without any)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))
