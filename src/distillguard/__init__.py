"""distillguard: ship a distilled student instead of a teacher that memorized sensitive data,
and prove with real attacks how much less it leaks."""

from __future__ import annotations

from distillguard._version import __version__

__all__ = ["__version__", "audit", "distill", "export", "gate", "label", "load_bundle", "report", "run", "scan", "train_teacher", "tune"]


def __getattr__(name: str):
    # The API pulls in torch; import it on first use so `import distillguard.config` stays light.
    if name in __all__:
        from distillguard import api

        return getattr(api, name)
    raise AttributeError(f"module 'distillguard' has no attribute {name!r}")
