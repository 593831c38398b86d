"""Request bodies checked against the bundle's schema, before anything reaches the model.

Every client mistake becomes a :class:`RequestError` with an HTTP status (400 malformed
JSON, 413 too large, 422 a row that does not fit the schema) and one line naming the
field and what was expected. Messages name fields and JSON types, never a submitted
value, so they can be logged.

Feature types come from the bundle (:attr:`Bundle.feature_types_`); each type has one
checker in :data:`CHECKERS` (numeric; for a mixed table also boolean and categorical, with
null for a missing value); a new type is one more checker and one more branch in :func:`to_matrix`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAME_CHARS = 64


class RequestError(Exception):
    """A client mistake: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_type(value: Any) -> str:
    """The JSON type of ``value`` in words (what an error says the client sent)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _name(key: str) -> str:
    return json.dumps(key[:_NAME_CHARS] + ("…" if len(key) > _NAME_CHARS else ""), ensure_ascii=True)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(422, f"{where}: expected a finite number, got {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise RequestError(422, f"{where}: expected a finite number within ±{_FLOAT32_MAX:.3g}, got one outside")
    return number


def _boolean(value: Any, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise RequestError(422, f"{where}: expected true, false or null (missing), got {json_type(value)}")
    return value


def _category(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(422, f"{where}: expected a category as a string or null (missing), got {json_type(value)}")
    if value is not None and len(value) > _MAX_CATEGORY_CHARS:
        raise RequestError(422, f"{where}: a category of {len(value)} characters; at most {_MAX_CATEGORY_CHARS}")
    return value


_MAX_CATEGORY_CHARS = 256

#: One checker per feature type (the bundle's ``feature_types_``): (value, where) -> the value the model takes.
#: A numeric table's features are all "numeric"; a mixed table's encoder also takes "boolean" and "categorical"
#: features, with null for a missing value (imputed as in training; an unseen category encodes as all zeros).
CHECKERS: dict[str, Callable[[Any, str], Any]] = {"numeric": _number, "boolean": _boolean, "categorical": _category}


def _reject_constant(name: str) -> Any:
    raise RequestError(400, f"body: {name} is not valid JSON; features must be finite numbers")


def parse_json(body: bytes) -> Any:
    """The body as JSON; NaN and Infinity (which Python's parser would accept) are refused."""
    if not body.strip():
        raise RequestError(400, 'body: empty; expected a JSON object {"rows": [{feature: value, ...}, ...]}')
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "body: not UTF-8 text; expected a JSON object") from None
    except RecursionError:
        raise RequestError(400, "body: JSON nested too deeply; expected an object of rows of numbers") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"body: malformed JSON at line {error.lineno} column {error.colno} "
                                f"({error.msg}); expected a JSON object") from None


def parse_rows(payload: Any, feature_types: dict[str, str], *, max_rows: int) -> list[list[Any]]:
    """The rows of ``{"rows": [{feature: value, ...}, ...]}``, each as values in feature order."""
    if not isinstance(payload, dict):
        raise RequestError(422, f'body: expected a JSON object {{"rows": [...]}}, got {json_type(payload)}')
    extra = [key for key in payload if key != "rows"]
    if extra:
        raise RequestError(422, f'body: unknown field {_name(extra[0])}; expected only "rows"')
    rows = payload.get("rows")
    if not isinstance(rows, list):
        got = "nothing" if "rows" not in payload else json_type(rows)
        raise RequestError(422, f"rows: expected an array of row objects, got {got}")
    if not rows:
        raise RequestError(422, "rows: empty; expected at least one row")
    if len(rows) > max_rows:
        raise RequestError(413, f"rows: {len(rows)} rows in one request; at most {max_rows}")
    return [_row(row, i, feature_types) for i, row in enumerate(rows)]


def _row(row: Any, i: int, feature_types: dict[str, str]) -> list[Any]:
    if not isinstance(row, dict):
        raise RequestError(422, f"rows[{i}]: expected an object of feature values, got {json_type(row)}")
    if len(row) != len(feature_types) or any(key not in feature_types for key in row):
        unknown = [key for key in row if key not in feature_types]
        if unknown:
            raise RequestError(422, f"rows[{i}]: unknown field {_name(unknown[0])}; expected only the bundle's "
                                    f"{len(feature_types)} features (GET /schema lists them)")
        missing = next(name for name in feature_types if name not in row)
        raise RequestError(422, f"rows[{i}]: missing feature {_name(missing)}; expected a value for every one of "
                                f"the bundle's {len(feature_types)} features")
    return [CHECKERS[kind](row[name], f"rows[{i}].{name}") for name, kind in feature_types.items()]


def to_matrix(rows: list[list[Any]], feature_types: dict[str, str]):
    """What the bundle's ``predict_proba`` takes: (n, d) float32 when every feature is numeric, else a
    DataFrame of the raw values by feature name (the bundle's encoder turns it into the model's input)."""
    if all(kind == "numeric" for kind in feature_types.values()):
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(feature_types))
    import pandas as pd

    return pd.DataFrame(rows, columns=list(feature_types), dtype=object)


def unknown_types(feature_types: dict[str, str]) -> dict[str, str]:
    """Features whose recorded type this server cannot check (the server refuses such a bundle)."""
    return {name: kind for name, kind in feature_types.items() if kind not in CHECKERS}
