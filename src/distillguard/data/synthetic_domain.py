"""The discrete domain a DP table generator works on: a fixed grid, no statistic of the data.

MST (and every marginal-based generator) needs a finite, *public* domain per attribute
(McKenna, Miklau & Sheldon 2021 assume it is given). Bin edges fitted on the sensitive
rows would leak them outside the privacy budget, so the domain here depends only on the
schema:

- a numeric feature is rounded to the nearest value of one fixed grid, the same for every
  column and every data set (:func:`value_grid`): 0, exact integers up to 100, quarters
  between 1 and 10, 20 log-spaced values per decade below 1 (down to 10⁻³) and above 100
  (up to 10⁹), mirrored for negatives; about 650 values. The generator's noisy 1-way
  counts then merge the grid values that hold too few rows into their nearest kept
  neighbour (MST's domain compression, paid for by the 1-way measurement), so the bins
  a column ends up with are chosen under the privacy budget;
- a categorical feature of the mixed-type encoder (its one-hot block, whose categories
  come from the public rows) is one attribute: the hot category, or "none of them";
- the label is one attribute of the classes.

Decoding maps a grid index back to its grid value and a category back to its one-hot row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard.data.types import Schema


def value_grid() -> np.ndarray:
    """(G,) sorted float64 values every numeric feature is rounded to (see the module docstring)."""
    small = 10.0 ** (np.arange(-60, 0) / 20)  # 0.001 .. 0.89
    quarters = np.arange(1.0, 10.0, 0.25)
    integers = np.arange(10.0, 101.0)
    large = 10.0 ** (np.arange(41, 181) / 20)  # 112 .. 1e9
    positive = np.unique(np.concatenate([small, quarters, integers, large]))
    return np.concatenate([-positive[::-1], [0.0], positive])


@dataclass(frozen=True)
class Attribute:
    """One attribute of the generator: ``numeric`` (a feature column on the grid), ``onehot``
    (a categorical feature's block of columns, plus a "none" value) or ``label``."""

    name: str
    kind: str
    columns: tuple[int, ...]
    size: int


def table_attributes(schema: Schema) -> list[Attribute]:
    """The generator's attributes for a schema's feature columns, then the label."""
    grid_size = len(value_grid())
    attrs: list[Attribute] = []
    encoding = schema.encoding if schema.encoding is not None and schema.encoding.get("kind") == "table" else None
    if encoding is None:
        attrs = [Attribute(f"x{j}", "numeric", (j,), grid_size) for j in range(schema.n_features)]
    else:
        start = 0
        for k, column in enumerate(encoding["columns"]):
            if column["type"] == "categorical":
                width = len(column["categories"])
                attrs.append(Attribute(f"x{k}", "onehot", tuple(range(start, start + width)), width + 1))
            else:
                width = 1
                attrs.append(Attribute(f"x{k}", "numeric", (start,), grid_size))
            start += width
    attrs.append(Attribute("label", "label", (), schema.n_classes))
    return attrs


def encode(X: np.ndarray, y: np.ndarray, attrs: list[Attribute]) -> dict[str, np.ndarray]:
    """(n, d) features and (n,) labels -> attribute name -> (n,) int64 codes in ``range(size)``."""
    grid = value_grid()
    cuts = (grid[1:] + grid[:-1]) / 2
    X = np.asarray(X, dtype=np.float64)
    codes = {}
    for a in attrs:
        if a.kind == "label":
            codes[a.name] = np.asarray(y, dtype=np.int64)
        elif a.kind == "numeric":
            codes[a.name] = np.searchsorted(cuts, X[:, a.columns[0]]).astype(np.int64)
        else:
            block = X[:, list(a.columns)]
            hot = block.max(axis=1) > 0.5
            codes[a.name] = np.where(hot, block.argmax(axis=1), len(a.columns)).astype(np.int64)
    return codes


def decode(codes: dict[str, np.ndarray], attrs: list[Attribute], *, n_features: int) -> np.ndarray:
    """Attribute codes (original, uncompressed domain) -> (n, n_features) float32 features."""
    grid = value_grid()
    n = len(next(iter(codes.values())))
    X = np.zeros((n, n_features), dtype=np.float32)
    for a in attrs:
        c = np.asarray(codes[a.name], dtype=np.int64)
        if a.kind == "numeric":
            X[:, a.columns[0]] = grid[c]
        elif a.kind == "onehot":
            hot = c < len(a.columns)
            X[np.flatnonzero(hot), np.asarray(a.columns)[c[hot]]] = 1.0
    return X


@dataclass(frozen=True)
class Compression:
    """How one attribute's values were merged after the noisy 1-way count.

    Attributes:
        mapping: (size,) original value -> compressed value.
        kept: (m,) the original value each compressed value stands for; -1 for the "rest"
            value of a categorical attribute, whose members are ``rest``.
        rest: the original values merged into the rest (categorical attributes only).
    """

    mapping: np.ndarray
    kept: np.ndarray
    rest: np.ndarray

    @property
    def size(self) -> int:
        return len(self.kept)


def compression(noisy: np.ndarray, kind: str, *, threshold: float) -> Compression:
    """Merge the values of one attribute whose noisy count is below ``threshold`` (MST's step).

    Values whose noisy count reaches ``threshold`` are kept (at least the largest one).
    On the numeric grid, every other value joins its nearest kept value in grid steps (ties: the lower),
    so a compressed value stands for one grid value; for categories and labels the others
    become one "rest" value, as in MST. Post-processing of the noisy count: no budget.
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    keep = noisy >= threshold
    if not keep.any():
        keep[int(np.argmax(noisy))] = True
    kept = np.flatnonzero(keep)
    values = np.arange(len(noisy))
    if kind == "numeric":
        right = np.clip(np.searchsorted(kept, values), 0, len(kept) - 1)
        left = np.clip(right - 1, 0, len(kept) - 1)
        nearer_left = np.abs(values - kept[left]) <= np.abs(kept[right] - values)
        return Compression(np.where(nearer_left, left, right).astype(np.int64), kept, np.zeros(0, np.int64))
    rest = np.flatnonzero(~keep)
    mapping = np.full(len(noisy), len(kept), dtype=np.int64)
    mapping[kept] = np.arange(len(kept))
    return Compression(mapping, np.append(kept, -1) if len(rest) else kept, rest)


def expand(compressed: np.ndarray, comp: Compression, *, rng: np.random.Generator) -> np.ndarray:
    """Compressed codes -> original codes: the value a compressed code stands for, or for the
    "rest" of a categorical attribute one of its values drawn uniformly (MST's reverse step)."""
    out = comp.kept[np.asarray(compressed, dtype=np.int64)]
    rest_rows = np.flatnonzero(out < 0)
    if len(rest_rows):
        out[rest_rows] = rng.choice(comp.rest, len(rest_rows))
    return out
