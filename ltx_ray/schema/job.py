"""A job: a manifest row with every default resolved, the form every later stage works on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ltx_ray.schema.fields import DEFAULT_SEGMENT_FRAMES, DEFAULT_V2V_STRENGTH, Keyframe, Lora, Task
from ltx_ray.schema.qc import QCConfig


class Job(BaseModel):
    """A manifest row with every default resolved: exactly what is generated."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    task: Task
    prompt: str
    negative_prompt: str
    image_uri: str | None = None
    keyframes: list[Keyframe] = Field(default_factory=list)
    video_uri: str | None = None
    strength: float = DEFAULT_V2V_STRENGTH
    audio_uri: str | None = None
    control: Literal["depth", "pose", "canny"] | None = None
    control_uri: str | None = None
    ic_lora: str | None = None
    loras: list[Lora] = Field(default_factory=list)
    preset: Literal["fast", "pro", "ultra"] | None = None
    two_stage: bool = False
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    num_frames_from_audio: bool = False
    width: int
    height: int
    num_frames: int
    fps: float
    seed: int
    steps: int
    guidance_scale: float
    audio: bool
    metadata: dict[str, Any] = Field(default_factory=dict)
    qc: QCConfig | None = Field(default=None, description="Quality checks; None: the video is accepted as generated")
    passthrough: dict[str, Any] = Field(default_factory=dict, description="x_ columns, kept as they came")

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def video_tokens(self) -> int:
        """Latent tokens of the video stream at the real 32x / 8x compression."""
        return ((self.num_frames - 1) // 8 + 1) * (self.height // 32) * (self.width // 32)

    @property
    def transformer_passes(self) -> int:
        """Transformer passes per step: 1 without guidance (distilled), else 3 (cond, uncond, STG)."""
        return 1 if self.guidance_scale <= 1.0 else 3

    @property
    def denoise_cost(self) -> int:
        """Relative GPU cost of the job: video tokens x steps x passes (what batch.run orders by)."""
        return self.video_tokens * self.steps * self.transformer_passes
