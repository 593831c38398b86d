"""Models a user brings to ``distillguard scan``, behind one interface: logits for encoded rows.

:func:`load_external_model` looks at a path and picks the loader:

- a distillguard teacher or deploy folder (``config.json`` with a schema, and
  ``model.safetensors``): the classifier as the run saved it; a teacher folder's
  ``split.json`` says which members it trained on;
- a ``.onnx`` file, run with onnxruntime on the encoded feature rows; its input width is
  checked against the data's;
- a Hugging Face sequence-classifier folder (``config.json`` with an architecture ending
  in ``ForSequenceClassification``): run on the token-id rows of text data encoded with
  its own tokenizer (``[data.text] tokenizer = FOLDER``; :mod:`distillguard.models.text`);
  other architectures through :func:`register_folder_loader`, else a one-line error.

Outputs that are probabilities (every value in [0, 1]) become log-probabilities, which
are logits of the same softmax, so every attack reads one kind of number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from distillguard.data.predictions import as_logits
from distillguard.data.types import Schema
from distillguard.errors import ArtifactError, DataError


class ExternalModel(Protocol):
    """What scan needs from a model: (n, C) float64 logits for (n, d) encoded rows."""

    description: str  #: what was loaded, for the report (no record values)
    trained_ids: np.ndarray | None  #: member row ids it trained on, when the model says (a teacher's split.json)

    def logits(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class _Loaded:
    description: str
    predict: Callable[[np.ndarray], np.ndarray]
    trained_ids: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self.predict(np.asarray(X, dtype=np.float32))


#: (detect(folder, config.json content), load(folder, schema)) pairs, tried in order.
_FOLDER_LOADERS: list[tuple[Callable[[Path, dict], bool], Callable[[Path, Schema], ExternalModel]]] = []


def register_folder_loader(detect: Callable[[Path, dict], bool], load: Callable[[Path, Schema], ExternalModel]) -> None:
    """Teach scan a kind of model folder: ``detect`` reads its ``config.json``, ``load`` builds the model."""
    _FOLDER_LOADERS.append((detect, load))


def load_external_model(path: Path, schema: Schema) -> ExternalModel:
    """The model at ``path``, checked against the data's ``schema`` (features and classes)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _load_onnx(path, schema)
    if not path.exists():
        raise DataError(f"{path}: [scan].model not found")
    config = _read_config(path) if path.is_dir() else None
    if config is None:
        raise DataError(f"{path}: [scan].model is not a model: expected a distillguard teacher or deploy folder "
                        "(config.json + model.safetensors), a Hugging Face model folder (config.json with "
                        "architectures) or a .onnx file")
    if "schema" in config and (path / "model.safetensors").is_file():
        return _load_distillguard(path, schema)
    for detect, load in _FOLDER_LOADERS:
        if detect(path, config):
            return load(path, schema)
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForCausalLM") for a in architectures):
        raise DataError(f"{path}: [scan].model is a causal language model ({architectures[0]}); scan audits "
                        "classifiers: audit it with [teacher] path and distillguard run on JSONL text")
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return _load_hf_text(path, schema)
    raise DataError(f"{path}: [scan].model is not a model: config.json has neither a distillguard schema with "
                    "model.safetensors nor a Hugging Face architecture it can load "
                    f"(architectures: {architectures or 'none'})")


def _read_config(folder: Path) -> dict | None:
    file = folder / "config.json"
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{file}: not valid JSON ({error})") from None
    return config if isinstance(config, dict) else None


def _load_distillguard(folder: Path, schema: Schema) -> ExternalModel:
    from distillguard.models.artifact import load_classifier

    clf, config = load_classifier(folder)
    if clf.schema.feature_names != schema.feature_names:
        raise DataError(f"{folder}: the model takes {clf.schema.n_features} features ({clf.schema.feature_names[:3]}…), "
                        f"the data have {schema.n_features} ({schema.feature_names[:3]}…)")
    if clf.schema.classes != schema.classes:
        raise DataError(f"{folder}: the model's classes {clf.schema.classes[:10]} differ from the data's "
                        f"{schema.classes[:10]}")
    split = folder / "split.json"
    trained = None
    if split.is_file():
        try:
            trained = np.asarray(json.loads(split.read_text(encoding="utf-8"))["train_ids"], dtype=np.int64)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
            raise ArtifactError(f"{split}: expected JSON with train_ids ({error})") from None
    role = config.get("role", "model")
    return _Loaded(f"distillguard {role} folder", clf.logits, trained)


def _load_onnx(file: Path, schema: Schema) -> ExternalModel:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - the serve extra installs it
        raise DataError(f'{file}: running an ONNX model needs onnxruntime (pip install "distillguard[serve]")') from None
    try:
        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for unreadable files
        raise DataError(f"{file}: not a readable ONNX model ({str(error).splitlines()[0][:200]})") from None
    inputs = session.get_inputs()
    width = inputs[0].shape[-1] if inputs and len(inputs[0].shape) == 2 else None
    if len(inputs) != 1 or not isinstance(width, int):
        shapes = [(i.name, i.shape) for i in inputs]
        raise DataError(f"{file}: expected one input of shape (rows, features), got {shapes}")
    if width != schema.n_features:
        raise DataError(f"{file}: the ONNX model takes {width} features per row, the data have "
                        f"{schema.n_features} ([data] columns without the label)")
    name, dtype = inputs[0].name, {"tensor(float)": np.float32, "tensor(double)": np.float64}.get(inputs[0].type)
    if dtype is None:
        raise DataError(f"{file}: the ONNX model's input is {inputs[0].type}; expected float or double feature rows")

    def predict(X: np.ndarray) -> np.ndarray:
        outputs = session.run(None, {name: X.astype(dtype)})
        return as_logits(_class_scores(outputs, schema.classes, file), source=str(file))

    return _Loaded("ONNX model (onnxruntime)", predict)


def _class_scores(outputs: list, classes: list, file: Path) -> np.ndarray:
    """The first output with one column per class, in the data's class order.

    A tensor's columns are taken in that order; skl2onnx's ZipMap output (a list of
    ``{class: probability}``) is ordered by its keys, which must name the data's classes.
    """
    n_classes = len(classes)
    for out in outputs:
        if isinstance(out, list) and out and isinstance(out[0], dict):  # ZipMap: [{class: p}, ...]
            by_name = {str(k): k for k in out[0]}
            if set(by_name) != {str(c) for c in classes}:
                raise DataError(f"{file}: the model's classes {list(by_name)[:10]} differ from the data's "
                                f"{[str(c) for c in classes][:10]}")
            out = np.array([[row[by_name[str(c)]] for c in classes] for row in out], dtype=np.float64)
        array = np.asarray(out)
        if array.ndim == 2 and array.shape[1] == n_classes and np.issubdtype(array.dtype, np.floating):
            return array.astype(np.float64)
    shapes = [np.shape(o) if not isinstance(o, list) else f"list of {len(o)}" for o in outputs]
    raise DataError(f"{file}: no output has one column per class ({n_classes}, in the data's class order); "
                    f"outputs: {shapes}")


def _load_hf_text(folder: Path, schema: Schema) -> ExternalModel:
    """A Hugging Face sequence classifier, on the token-id rows of text data encoded with its own tokenizer."""
    import torch

    from distillguard.data.text_roles import tokenizer_json
    from distillguard.models.text import load_hf_text_classifier

    encoding = schema.encoding or {}
    if encoding.get("kind") != "text":
        raise DataError(f"{folder}: [scan].model is a text classifier; [data] must be labelled text (a text "
                        'built-in, or files with [data.text]) encoded with its tokenizer: [data.text] tokenizer = '
                        f'"{folder}"')
    model, tokenizer = load_hf_text_classifier(folder)
    if tokenizer_json(tokenizer) != encoding.get("tokenizer"):
        raise DataError(f"{folder}: [data] was encoded with another tokenizer than the model's; set [data.text] "
                        f'tokenizer = "{folder}"')
    n_labels = int(model.hf.config.num_labels)
    if n_labels != len(schema.classes):
        raise DataError(f"{folder}: the model has {n_labels} labels, the data {len(schema.classes)} classes")

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            rows = torch.from_numpy(np.asarray(X, dtype=np.int64))
            return torch.cat([model(rows[i:i + 64]) for i in range(0, len(rows), 64)]).double().numpy()

    return _Loaded(f"Hugging Face sequence classifier {folder.name}", predict)
