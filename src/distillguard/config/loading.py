"""Reading a spec: TOML text to a validated :class:`~distillguard.config.spec.Spec`.

Relative paths are resolved against the spec file's folder, so a spec means the same
thing whatever the working directory, and every validation problem becomes one line of a
single :class:`~distillguard.errors.ConfigError` that names the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distillguard.config.data import LM_FILES, ROLES
from distillguard.config.run import RunConfig
from distillguard.config.spec import Spec
from distillguard.errors import ConfigError, did_you_mean, shown_list


def parse_spec(raw: dict[str, Any], *, base_dir: Path, source: str = "spec") -> Spec:
    """Validate a parsed TOML table; relative paths are taken from ``base_dir``."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    _resolve_paths(raw, base_dir)
    try:
        return Spec.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_errors(source, error)) from None


def load_spec(path: str | Path | None) -> Spec:
    """Load and validate a spec file; ``None`` gives the built-in demo spec."""
    if path is None:
        return demo_spec()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: spec file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    run = raw.get("run")
    if run is None or (isinstance(run, dict) and "name" not in run):  # default run name: the spec file's
        raw = {**raw, "run": {**(run or {}), "name": path.stem or "distillguard"}}
    return parse_spec(raw, base_dir=path.resolve().parent, source=str(path))


def demo_spec() -> Spec:
    """The built-in demo: purchase-synth with few members, so memorization is visible."""
    return Spec.model_validate({"run": RunConfig(name="demo")})


def format_errors(source: str, error: ValidationError) -> str:
    """One line: ``source: [section].key: what was expected (got value); ...`` for every error."""
    parts = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        where = f"[{loc[0]}]" + "".join(f".{p}" for p in loc[1:]) + ": " if loc else ""  # whole-spec checks name their keys
        if item["type"] == "extra_forbidden":
            known = known_keys(loc[:-1]) if loc else []
            hint = did_you_mean(loc[-1], known) if loc else ""
            if not hint and known:
                hint = f" (known keys: {shown_list(known, limit=25)})"
            parts.append(f"{where}unknown key{hint}")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            got = f" (got {shown!r})" if not isinstance(shown, dict) and "input" in item else ""
            parts.append(f"{where}{msg}{got}")
    return f"{source}: " + "; ".join(parts)


def known_keys(path: list[str]) -> list[str]:
    """The keys a table of the spec accepts (``[]``: the top level), over both tracks."""
    from pydantic import BaseModel

    from distillguard.config.spec import ClassifierSpec, LMSpec

    models: list[type[BaseModel]] = [ClassifierSpec, LMSpec]
    for part in path:
        inner = []
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                inner += [t for t in _model_types(field.annotation)]
        models = inner
    return sorted({key for model in models for key in model.model_fields})


def _model_types(annotation: Any) -> list[type]:
    """The pydantic models inside an annotation (``X``, ``X | None``)."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [t for arg in get_args(annotation) for t in _model_types(arg)]


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file paths of ``[data]`` (``[data.text] tokenizer`` too), ``[teacher]`` and ``[student]``
    absolute, in place."""
    data = raw.get("data")
    if isinstance(data, dict):
        for role in (*ROLES, *LM_FILES, "table"):
            if isinstance(data.get(role), str):
                data[role] = str((base / data[role]).resolve())
        text = data.get("text")
        if isinstance(text, dict) and isinstance(text.get("tokenizer"), str):
            data["text"] = {**text, "tokenizer": str((base / text["tokenizer"]).resolve())}
    scan = raw.get("scan")
    if isinstance(scan, dict):
        for key in ("model", "predictions"):
            if isinstance(scan.get(key), str):
                scan[key] = str((base / scan[key]).resolve())
    for section in ("teacher", "student"):
        table = raw.get(section)
        if isinstance(table, dict):
            if isinstance(table.get("path"), str):
                table["path"] = str((base / table["path"]).resolve())
            tokenizer = table.get("tokenizer")
            if isinstance(tokenizer, dict) and isinstance(tokenizer.get("path"), str):
                table["tokenizer"] = {**tokenizer, "path": str((base / tokenizer["path"]).resolve())}
