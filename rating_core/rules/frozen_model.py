"""The base of every part of a configuration file the service reads (rules, policies, scoring schemes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """Read once and never changed while the service runs; a key the model does not know is an error
    (``extra="forbid"``), so a misspelt line in a rules file stops the service instead of being ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
