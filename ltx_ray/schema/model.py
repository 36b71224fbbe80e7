"""Which model a job runs on, and the profile (generation recipe) that comes with it."""

from __future__ import annotations

from pydantic import BaseModel

from ltx_ray.schema.profiles import ModelProfile


class ResolvedModel(BaseModel):
    """A model ready for ``from_pretrained``: where it is, what it is and how it generates."""

    source: str  # what the user asked for
    path: str  # local dir or hub id
    model_id: str
    revision: str
    profile: ModelProfile
