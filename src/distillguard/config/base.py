"""The base of every spec section: unknown keys are errors and a loaded spec is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A table of the spec: strict (``extra="forbid"``) so typos fail, frozen so a run cannot mutate it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
