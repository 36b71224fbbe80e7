"""The vocabulary of a manifest: limits and defaults, URIs, and the small nested types.

Pydantic only: nothing in ltx_ray.schema imports torch, av, fsspec, ray or another ltx_ray
layer, so validating a manifest (``ltx-ray validate``, the HTTP ingress) stays light.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
TASKS = ("t2v", "i2v", "keyframes", "v2v", "extend", "a2v", "control", "retake")
Task = Literal["t2v", "i2v", "keyframes", "v2v", "extend", "a2v", "control", "retake"]
CONTROLS = ("depth", "pose", "canny")
# The task each conditioning input implies, and what each task needs (for error messages).
TASK_OF_INPUT = {
    "control_uri": "control", "audio_uri": "a2v", "video_uri": "v2v", "keyframes": "keyframes", "image_uri": "i2v",
}
NEEDS = {
    "t2v": "no conditioning input", "i2v": "image_uri", "keyframes": "keyframes", "v2v": "video_uri",
    "extend": "video_uri", "a2v": "audio_uri", "control": "control_uri", "retake": "video_uri, start_s and end_s",
}
# The frames each long-video segment re-creates from the end of the previous one: one
# latent frame plus the first (8k + 1 keeps the condition on LTX-2's latent grid).
SEGMENT_OVERLAP_FRAMES = 9
DEFAULT_SEGMENT_FRAMES = 241  # 10 s at 24 fps, LTX-2's longest trained clip
DEFAULT_V2V_STRENGTH = 0.6
URI_SCHEMES = ("file", "s3", "gs", "gcs", "http", "https", "memory")
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_FPS = 768, 512, 121, 24.0
MAX_SIDE = 4096
MAX_FRAMES = 1441  # one minute at 24 fps (long videos are chained segments)
MAX_PROMPT_CHARS = 32000
# seconds: auto picks a length in these bounds by default (diffusers LTX2Pipeline.__call__'s).
AUTO_MIN_SECONDS, AUTO_MAX_SECONDS = 1.0, 20.0


def check_uri(value: str) -> str:
    """A local path or a URI with a scheme fsspec can read for us."""
    if not value or not value.strip():
        raise ValueError("is empty; give a local path or a file://, s3://, gs:// or http(s):// URI")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in URI_SCHEMES:
            raise ValueError(
                f"has the unsupported scheme {scheme!r}; use a local path or one of "
                + ", ".join(f"{s}://" for s in URI_SCHEMES)
            )
    return value


def frames_for_seconds(seconds: float, fps: float) -> int:
    """The valid frame count (8k + 1) nearest to ``seconds`` at ``fps``."""
    k = max(1, round((seconds * fps - 1) / 8))
    return 8 * k + 1


def seconds_value(v: Any) -> Any:
    """A ``seconds`` cell: None, ``"auto"``, or a number (or numeric text) of seconds in range."""
    if v is None or v == "auto":
        return v
    limit = MAX_FRAMES / DEFAULT_FPS
    try:
        seconds = float(v) if not isinstance(v, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds <= limit:  # NaN fails too
        raise ValueError(f"must be a number of seconds, more than 0 and at most {limit:.4g}, or 'auto'")
    return seconds


def stable_seed(job_id: str) -> int:
    """The default seed: a stable hash of the job id, so the same job gives the same video."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class Keyframe(BaseModel):
    """One guide image placed at a frame of the output video."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The image: a local path, file://, s3://, gs:// or http(s):// URI.")
    frame: int = Field(
        ge=0,
        description="Index of the output frame this image should become (0-based), any frame of the "
        "video: the keyframe's tokens are placed at exactly that frame, as the official LTX-2 keyframe "
        "pipelines do; the sidecar records where each landed (`keyframes_landed`).",
    )
    strength: float = Field(
        default=1.0, ge=0.0, le=1.0, allow_inf_nan=False, description="How strongly the frame follows the image, 0..1; default 1.0."
    )

    _check_uri = field_validator("uri")(classmethod(lambda cls, v: check_uri(v)))

    @field_validator("strength", mode="before")
    @classmethod
    def _null_strength(cls, v: Any) -> Any:
        return 1.0 if v is None else v


class Lora(BaseModel):
    """One LoRA applied to a row's generation only."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The LoRA weights (.safetensors, diffusers or Lightricks format): a local path or URI.")
    scale: float = Field(
        default=1.0, ge=-4.0, le=4.0, allow_inf_nan=False, description="Adapter weight for this row; default 1.0."
    )

    _check_uri = field_validator("uri")(classmethod(lambda cls, v: check_uri(v)))

    @field_validator("scale", mode="before")
    @classmethod
    def _null_scale(cls, v: Any) -> Any:
        return 1.0 if v is None else v


class Preset(BaseModel):
    """A named quality level: its size, frame rate and whether it refines in a second stage."""

    width: int
    height: int
    fps: float
    max_fps: float
    two_stage: bool


# Fast is one stage at 720p; Pro and Ultra generate at half size, upsample the latents x2 and
# refine them with the distilled schedule (docs/engine.md, "Two-stage").
PRESETS = {
    "fast": Preset(width=1280, height=704, fps=24.0, max_fps=50.0, two_stage=False),
    "pro": Preset(width=1920, height=1088, fps=24.0, max_fps=48.0, two_stage=True),
    "ultra": Preset(width=3840, height=2176, fps=24.0, max_fps=50.0, two_stage=True),
}
