"""Which model a job runs on, and the generation defaults that come with it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelDefaults(BaseModel):
    """Generation defaults that belong to a model (read from its card, else LTX-2.0's)."""

    steps: int = 40
    guidance_scale: float = 3.0
    negative_prompt: str = ""
    # Extra keyword arguments for the diffusers call that depend on the model's depth
    # (e.g. which block gets spatio-temporal guidance).
    call_kwargs: dict[str, Any] = Field(default_factory=dict)


class ResolvedModel(BaseModel):
    """A model ready for ``from_pretrained``: where it is and what it is."""

    source: str  # what the user asked for
    path: str  # local dir or hub id
    model_id: str
    revision: str
    defaults: ModelDefaults
