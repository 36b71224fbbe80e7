"""Which model a job runs on, and the profile (generation recipe) that comes with it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ltx_ray.schema.profiles import ModelProfile


class ResolvedModel(BaseModel):
    """A model ready for ``from_pretrained``: where it is, what it is and how it generates."""

    source: str  # what the user asked for
    path: str  # a local diffusers folder (a hub id or a URI is downloaded or copied first)
    model_id: str
    revision: str
    profile: ModelProfile
    # Where two-stage's companions are looked for on this machine: the profile's files in the
    # folder, or what --upsampler / --distilled-lora name. They may be missing; check_companions
    # says so for a run that needs them.
    upsampler: str | None = Field(default=None, description="folder of the x2 latent upsampler")
    distilled_lora: str | None = Field(default=None, description="stage 2's distilled LoRA file; None: none is used")
    enhancer: str | None = Field(
        default=None, description="folder of the prompt enhancer (--enhancer, or the model's own processor/): "
        "what enhance_prompt rows need; None: such rows fail naming the fix",
    )
