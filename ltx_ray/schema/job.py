"""A job: a manifest row with every default resolved, the form every later stage works on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ltx_ray.schema.fields import DEFAULT_SEGMENT_FRAMES, DEFAULT_V2V_STRENGTH, Keyframe, Lora, Task
from ltx_ray.schema.profiles import DEV_AUDIO, DEV_VIDEO, Guider, Schedule
from ltx_ray.schema.qc import QCConfig
from ltx_ray.schema.schedules import STAGE_2_DISTILLED_SIGMAS, StagePlan, stage1_sigmas, video_tokens


class AutoSeconds(BaseModel):
    """``seconds: auto``: the model's duration head picks the length within these bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_seconds: float
    max_seconds: float


class Retake(BaseModel):
    """``retake``: the seconds of the source video to generate again; the rest is kept.

    Size, length and frame rate are the source video's, read when it is fetched
    (job.inputs.resolve_from_inputs); ``given`` holds what the row said of them, which must agree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_s: float
    end_s: float
    given: dict[str, float] = Field(default_factory=dict)

    def latent_frames(self, num_frames: int, fps: float) -> list[bool]:
        """Per video latent frame: generated again, because the seconds it decodes to overlap
        ``[start_s, end_s)`` (the official ``TemporalRegionMask``)."""
        return [a / fps < self.end_s and b / fps > self.start_s for a, b in latent_frame_spans(num_frames)]

    def frames(self, num_frames: int, fps: float) -> tuple[int, int]:
        """The output frames ``[first, end)`` generated again: the asked range widened to the latent grid."""
        picked = [span for span, on in zip(latent_frame_spans(num_frames), self.latent_frames(num_frames, fps)) if on]
        return picked[0][0], picked[-1][1]


def latent_frame_spans(num_frames: int) -> list[tuple[int, int]]:
    """The output frames ``[first, end)`` each video latent frame decodes to (LTX-2's causal 8x VAE)."""
    return [(0, 1)] + [(8 * (k - 1) + 1, 8 * k + 1) for k in range(1, (num_frames - 1) // 8 + 1)]


class Job(BaseModel):
    """A manifest row with every default resolved: exactly what is generated."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    task: Task
    prompt: str
    negative_prompt: str
    image_uri: str | None = None
    keyframes: list[Keyframe] = Field(default_factory=list)
    keyframe_time: Literal["latent_grid", "exact"] = Field(
        default="latent_grid",
        description="where a keyframe's tokens sit in time: `exact` (its own frame, as the official "
        "VideoConditionByKeyframeIndex) for every keyframe job now; `latent_grid` (frame 8(L-1)+1, what "
        "ltx-ray did before) is the default only so that the hashes of jobs without keyframes stay as they were",
    )
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
    num_frames: int = Field(description="frames to generate; with auto_seconds the most it may be, until the "
                                        "engine's duration head picks the length")
    auto_seconds: AutoSeconds | None = None
    retake: Retake | None = None
    fps: float
    seed: int
    steps: int
    guidance_scale: float
    # From the model's profile (schema/profiles.py), resolved per job so the job hash changes
    # when a recipe does and ``ltx-ray plan`` shows what will run.
    profile: str = "ltx-2.0-dev"
    video_guidance: Guider = DEV_VIDEO
    audio_guidance: Guider = DEV_AUDIO
    stg_blocks: list[int] = Field(default_factory=lambda: [29])
    cross_timestep: bool = False
    schedule: Schedule = "ltx2_dev"
    distilled_lora: str | None = Field(default=None, description="stage 2's LoRA file (two-stage on a dev model)")
    stage_1_lora: str | None = Field(default=None, description="control on a dev model: the stage-2 LoRA applied in "
                                     "stage 1 too, so the distilled IC-LoRA recipe runs on a distilled transformer")
    audio: bool
    decoder: Literal["conv", "diffusion"] = "conv"
    enhance_prompt: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    qc: QCConfig | None = Field(default=None, description="Quality checks; None: the video is accepted as generated")
    passthrough: dict[str, Any] = Field(default_factory=dict, description="x_ columns, kept as they came")

    def landed_frame(self, frame: int) -> int:
        """The output frame a keyframe asked for at ``frame`` lands on."""
        if self.keyframe_time == "exact" or frame == 0:
            return frame
        return (frame - 1) // 8 * 8 + 1  # the first frame of its latent

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def video_tokens(self) -> int:
        """Latent tokens of the video stream at the real 32x / 8x compression."""
        return video_tokens(self.width, self.height, self.num_frames)

    @property
    def classifier_free_guidance(self) -> bool:
        """Whether diffusers' LTX2 pipelines run the negative prompt (CFG on either modality)."""
        return self.video_guidance.cfg > 1 or self.audio_guidance.cfg > 1

    @property
    def transformer_passes(self) -> int:
        """Transformer passes per stage-1 step, as diffusers' LTX2 pipelines run them: one
        conditional pass, plus one each for CFG (either modality), STG and modality guidance."""
        v, a = self.video_guidance, self.audio_guidance
        return 1 + self.classifier_free_guidance + (v.stg > 0 or a.stg > 0) + (v.modality > 1 or a.modality > 1)

    @property
    def stages(self) -> list[StagePlan]:
        """What runs: stage 1 (at half size when two-stage), then the distilled refinement."""
        half = 2 if self.two_stage else 1
        w, h = self.width // half, self.height // half
        sigmas = stage1_sigmas(self.schedule, self.steps)
        plans = [StagePlan(stage=1, width=w, height=h, video_tokens=video_tokens(w, h, self.num_frames), steps=len(sigmas),
                           sigmas=sigmas, transformer_passes_per_step=self.transformer_passes)]
        if self.two_stage:
            plans.append(StagePlan(
                stage=2, width=self.width, height=self.height, video_tokens=self.video_tokens,
                steps=len(STAGE_2_DISTILLED_SIGMAS), sigmas=list(STAGE_2_DISTILLED_SIGMAS), transformer_passes_per_step=1,
                lora=self.distilled_lora,
            ))
        return plans

    @property
    def denoise_cost(self) -> int:
        """Relative GPU cost of the job: tokens x steps x passes over its stages (what batch.run orders by)."""
        return sum(s.video_tokens * s.steps * s.transformer_passes_per_step for s in self.stages)
