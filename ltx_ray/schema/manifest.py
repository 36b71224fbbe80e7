"""Manifest schema v1: the single source of truth for what a manifest row may hold.

``ManifestRow`` is what a Parquet row (or an HTTP request) says; ``ManifestRow.resolve``
turns it into a ``Job`` (ltx_ray.schema.job) with every default resolved. ``manifests/SCHEMA.md`` is
generated from the field descriptions below (``ltx-ray schema-doc``), so the two cannot
drift.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ltx_ray.schema.fields import (
    AUTO_MAX_SECONDS, AUTO_MIN_SECONDS, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_SEGMENT_FRAMES,
    DEFAULT_V2V_STRENGTH, DEFAULT_WIDTH, JOB_ID_PATTERN, MAX_FRAMES, MAX_PROMPT_CHARS, MAX_SIDE, NEEDS, PRESETS,
    SEGMENT_OVERLAP_FRAMES, TASK_OF_INPUT, Keyframe, Lora, Task, check_uri, frames_for_seconds, seconds_value,
    stable_seed,
)
from ltx_ray.schema.checks import check_auto_seconds, check_keyframes, check_retake
from ltx_ray.schema.job import AutoSeconds, Job, Retake
from ltx_ray.schema.profiles import UNGUIDED, ModelProfile, ic_lora_recipe, variant_profile
from ltx_ray.schema.qc import QCConfig


class ManifestRow(BaseModel):
    """One row of a manifest: one video to generate. A null cell means the column's default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    job_id: str = Field(
        pattern=JOB_ID_PATTERN,
        description="Required. Names every output of the job (`{out}/{job_id}.mp4`); unique in a run; "
        "letters, digits, `.`, `_`, `-`, at most 128 characters, starting with a letter or digit.",
    )
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="Required. What the video shows and sounds like."
    )
    task: Task | None = Field(
        default=None,
        description="`t2v`, `i2v`, `keyframes`, `v2v`, `extend`, `a2v`, `control` or `retake`. When absent it is "
        "inferred from the one conditioning input given: control_uri -> control, audio_uri -> a2v, video_uri -> v2v "
        "(or retake with start_s / end_s; `extend` must be named), keyframes -> keyframes, image_uri -> i2v, none -> "
        "t2v. An explicit task that contradicts the inputs is an error.",
    )
    negative_prompt: str | None = Field(default=None, description="What the video should avoid.")
    image_uri: str | None = Field(
        default=None, description="First-frame image for i2v: a local path, file://, s3://, gs:// or http(s):// URI."
    )
    keyframes: list[Keyframe] | None = Field(
        default=None,
        description="Guide images at output frames: list of {uri, frame, strength}; 0 <= frame < num_frames, "
        "frames distinct; strength defaults to 1.0.",
    )
    video_uri: str | None = Field(
        default=None,
        description="Source clip (mp4, mov, webm) for `v2v` (the output follows it, restyled by the prompt), "
        "`extend` (the output is the clip followed by its continuation) or `retake` (start_s..end_s of it is "
        "generated again).",
    )
    start_s: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="`retake`: where the span to generate again starts, in seconds of video_uri (with end_s). The "
        "span widens to LTX-2's latent grid (8 frames); outside it the output is the source's own frames and sound. "
        "Size, length and fps are the source's (8k + 1 frames, sides multiples of 32); one stage.",
    )
    end_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="`retake`: where the span ends (exclusive), in seconds of video_uri; after start_s, at most the "
        "video's duration.",
    )
    strength: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description=f"v2v only: how closely the output keeps the source video, 0..1 (1 = keep it); default "
        f"{DEFAULT_V2V_STRENGTH}.",
    )
    audio_uri: str | None = Field(
        default=None,
        description="Audio track (wav, mp3, m4a, or a video's audio) for `a2v`: the video follows it and the mp4 "
        "carries it unchanged; its length sets the video's unless num_frames or seconds is given.",
    )
    control: Literal["depth", "pose", "canny"] | None = Field(
        default=None,
        description="`control` task: the kind of control video in control_uri (`depth`, `pose` or `canny`); needs "
        "control_uri and ic_lora.",
    )
    control_uri: str | None = Field(
        default=None, description="The control video (depth maps, pose skeletons or canny edges) the output follows."
    )
    ic_lora: str | None = Field(
        default=None,
        description="The IC-LoRA (.safetensors) trained for that control; its `reference_downscale_factor` and "
        "`reference_temporal_scale_factor` metadata, when present, set the control video's size and frame rate. A "
        "control row runs the official IC-LoRA recipe (8 distilled sigmas, no guidance; on a dev model with its "
        "stage-2 LoRA in stage 1 too) unless it gives steps or guidance_scale.",
    )
    loras: list[Lora] | None = Field(
        default=None,
        description="LoRAs for this row only: list of {uri, scale}; cached by the worker, never applied to "
        "another row.",
    )
    preset: Literal["fast", "pro", "ultra"] | None = Field(
        default=None,
        description="`fast` 1280x704 @ 24 fps, one stage; `pro` 1920x1088 @ 24 (up to 48) fps and `ultra` "
        "3840x2176 @ 24 (up to 50) fps in two stages (half size, x2 latent upsampler, distilled refinement). "
        "Explicit width, height and fps override the preset's.",
    )
    two_stage: bool | None = Field(
        default=None,
        description="Generate at half size, upsample the latents x2 and refine (width and height multiples of 64); "
        "default the preset's, else false.",
    )
    segment_frames: int | None = Field(
        default=None,
        ge=17,
        le=MAX_FRAMES,
        description=f"Longest clip generated in one pass, 8k + 1; default {DEFAULT_SEGMENT_FRAMES}. A longer video "
        f"is made of chained segments, each continuing the last {SEGMENT_OVERLAP_FRAMES} frames of the previous "
        "one, with the audio cross-faded at the joins.",
    )
    width: int | None = Field(
        default=None, ge=32, le=MAX_SIDE, description=f"Output width in pixels, a multiple of 32; default {DEFAULT_WIDTH}."
    )
    height: int | None = Field(
        default=None,
        ge=32,
        le=MAX_SIDE,
        description=f"Output height in pixels, a multiple of 32; default {DEFAULT_HEIGHT}.",
    )
    num_frames: int | None = Field(
        default=None,
        ge=9,
        le=MAX_FRAMES,
        description=f"Number of frames, 8k + 1 (9, 17, ..., 121, ...); default {DEFAULT_NUM_FRAMES}. "
        "Give either this or `seconds`.",
    )
    seconds: Annotated[float | Literal["auto"] | None, BeforeValidator(seconds_value)] = Field(
        default=None,
        json_schema_extra={"column": "double or string"},
        description="Duration in seconds, converted to the nearest valid frame count at `fps`; or `auto` (t2v and "
        "i2v on a model with a duration head, LTX-2.5 and later): the model picks the length from the prompt, "
        f"within min_seconds..max_seconds, and the results row records it. In Parquet a double column, or a string "
        "column holding numbers and `auto`.",
    )
    min_seconds: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description=f"With seconds `auto`: the shortest length the model may pick; default {AUTO_MIN_SECONDS:g}.",
    )
    max_seconds: float | None = Field(
        default=None, gt=0, le=MAX_FRAMES / DEFAULT_FPS, allow_inf_nan=False,
        description=f"With seconds `auto`: the longest length the model may pick; default {AUTO_MAX_SECONDS:g}.",
    )
    decoder: Literal["conv", "diffusion"] | None = Field(
        default=None,
        description="`conv` (the VAE's decoder, default) or `diffusion` (LTX-2.5's diffusion decoder, "
        "`diffusion_decoder/` in its repo: a small diffusion model that samples the pixels).",
    )
    variant: Literal["distilled", "full"] | None = Field(
        default=None,
        description="LTX-2.5, which ships both DiTs: `distilled` (`transformer/`: 8 sigmas, one unguided pass a step) "
        "or `full` (`transformer_full/`: the guided dev recipe); the row runs with that variant's profile. Default: "
        "the loaded model's.",
    )
    enhance_prompt: bool | None = Field(
        default=None,
        description="true: the model's prompt enhancer rewrites the prompt first, with the official system prompt "
        "(i2v: looking at the image too); the rewritten prompt is in the sidecar as `generation.enhanced_prompt`. "
        "Needs an enhancer: `--enhancer DIR` (LTX-2.0 / 2.3: a Gemma 3 processor; LTX-2.5: google/gemma-4-E2B-it).",
    )
    fps: float | None = Field(default=None, gt=0, le=120, allow_inf_nan=False, description=f"Frames per second; default {DEFAULT_FPS:g}.")
    seed: int | None = Field(
        default=None,
        ge=0,
        lt=2**63,
        description="Random seed; default a stable hash of job_id (same job, same video).",
    )
    steps: int | None = Field(
        default=None, ge=1, le=500, description="Denoising steps; default the model's own (its card)."
    )
    guidance_scale: float | None = Field(
        default=None, ge=0, le=50, allow_inf_nan=False, description="Classifier-free guidance scale; default the model's own."
    )
    audio: bool | None = Field(
        default=None, description="Generate the audio track; default true. false writes a video-only mp4."
    )
    metadata: str | None = Field(
        default=None,
        json_schema_extra={"column": "json"},
        description="A JSON object (as a string) passed through to the sidecar and the results (SKU, campaign, ...).",
    )
    qc: QCConfig | None = Field(
        default=None,
        description="Quality checks as a JSON object, e.g. `{\"min_motion\": 0.5, \"max_attempts\": 3}` (fields: "
        "min_motion, max_blank_fraction, min_audio_dbfs, min_keyframe_ssim, max_attempts; `{}` takes every default). "
        "A video failing a check is generated again with a new seed; absent: no checks.",
    )

    @field_validator("qc", mode="before")
    @classmethod
    def _qc_json(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f'is not valid JSON ({exc.msg}); write a JSON object such as {{"min_motion": 0.5}}') from None
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is blank; write what the video should show")
        return v

    @field_validator("image_uri", "video_uri", "audio_uri", "control_uri", "ic_lora")
    @classmethod
    def _input_uri(cls, v: str | None) -> str | None:
        return None if v is None else check_uri(v)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_32(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(f"must be a multiple of 32; use {max(32, round(v / 32) * 32)}")
        return v

    @field_validator("num_frames", "segment_frames")
    @classmethod
    def _eight_k_plus_one(cls, v: int | None) -> int | None:
        if v is not None and (v - 1) % 8:
            lower = (v - 1) // 8 * 8 + 1
            raise ValueError(f"must be 8k + 1 (9, 17, ..., 121, ...); use {lower} or {lower + 8}")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_is_object(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError as exc:
            raise ValueError(f'is not valid JSON ({exc.msg}); write a JSON object such as {{"sku": "A1"}}') from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object such as {"sku": "A1"}, not a ' + type(parsed).__name__)
        return v

    def inputs_given(self) -> list[str]:
        """The conditioning inputs of the row, each of which implies a task."""
        given = {
            "control_uri": self.control_uri, "audio_uri": self.audio_uri, "video_uri": self.video_uri,
            "keyframes": self.keyframes, "image_uri": self.image_uri,
        }
        return [name for name, value in given.items() if value]

    def inferred_task(self) -> str:
        given = self.inputs_given()
        task = TASK_OF_INPUT[given[0]] if given else "t2v"
        return "retake" if task == "v2v" and (self.start_s is not None or self.end_s is not None) else task

    @model_validator(mode="after")
    def _consistent(self) -> ManifestRow:
        if self.num_frames is not None and self.seconds is not None:
            raise ValueError("num_frames: is given together with seconds; give only one of them")
        check_auto_seconds(self)
        given = self.inputs_given()
        if len(given) > 1:
            raise ValueError(f"{given[1]}: is given together with {given[0]}; a row takes one conditioning input")
        inferred = self.inferred_task()
        allowed = {"v2v", "extend", "retake"} if inferred in ("v2v", "retake") else {inferred}
        if self.task is not None and self.task not in allowed:
            raise ValueError(
                f"task: the row gives {NEEDS[inferred]}; "
                f"a {self.task} job needs {NEEDS[self.task]} (or leave task empty to infer {inferred!r})"
            )
        task = self.task or inferred
        if self.strength is not None and task != "v2v":
            raise ValueError(f"strength: applies to v2v only; remove it from this {task} row")
        if task == "control" or self.control or self.ic_lora:
            for name in ("control", "control_uri", "ic_lora"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: a control row needs control (depth, pose or canny), control_uri and ic_lora")
        fps = self.resolved_fps()
        if self.preset is not None and fps > PRESETS[self.preset].max_fps:
            raise ValueError(f"fps: {self.preset} goes up to {PRESETS[self.preset].max_fps:g} fps; lower fps")
        if self.resolved_two_stage():
            for name in ("width", "height"):
                value = getattr(self, name)
                if value is not None and value % 64:
                    raise ValueError(
                        f"{name}: two-stage output must be a multiple of 64 (stage 1 runs at half size); use "
                        f"{max(64, round(value / 64) * 64)}"
                    )
        if task in ("extend", "v2v", "control") and self.resolved_num_frames() > (self.segment_frames or DEFAULT_SEGMENT_FRAMES):
            # Their source video conditions one pass; chaining them is not supported yet.
            raise ValueError(f"num_frames: a {task} video is generated in one segment; shorten it or raise segment_frames")
        check_keyframes(self)
        check_retake(self, task)
        return self

    def auto_seconds(self) -> AutoSeconds | None:
        """The bounds of a ``seconds: auto`` row (diffusers' ``LTX2Pipeline`` defaults), else None."""
        if self.seconds != "auto":
            return None
        return AutoSeconds(min_seconds=AUTO_MIN_SECONDS if self.min_seconds is None else self.min_seconds,
                           max_seconds=AUTO_MAX_SECONDS if self.max_seconds is None else self.max_seconds)

    def _retake(self) -> Retake:
        given = {name: getattr(self, name) for name in ("width", "height", "num_frames", "fps") if getattr(self, name) is not None}
        return Retake(start_s=self.start_s, end_s=self.end_s, given=given)

    def resolved_two_stage(self) -> bool:
        if self.two_stage is not None:
            return self.two_stage
        return PRESETS[self.preset].two_stage if self.preset else False

    def resolved_fps(self) -> float:
        if self.fps is not None:
            return self.fps
        return PRESETS[self.preset].fps if self.preset else DEFAULT_FPS

    def resolved_num_frames(self) -> int:
        if self.num_frames is not None:
            return self.num_frames
        if self.seconds == "auto":  # at most this long: what validation and cost estimates use
            return min(MAX_FRAMES, frames_for_seconds(self.auto_seconds().max_seconds, self.resolved_fps()))
        if self.seconds is not None:
            return frames_for_seconds(self.seconds, self.resolved_fps())
        return DEFAULT_NUM_FRAMES

    def resolve(self, profile: ModelProfile) -> Job:
        """Every default filled in: what will actually be generated (with ``variant``'s profile,
        where the model ships that variant; validation names a row whose does not)."""
        profile = variant_profile(profile, self.variant) or profile
        task = self.task or self.inferred_task()
        # control: the official IC-LoRA recipe, unless the row asks for its own steps or guidance
        ic_lora = task == "control" and self.steps is None and self.guidance_scale is None
        stage_1_lora = profile.distilled_lora if ic_lora and profile.schedule != "distilled" else None
        profile = ic_lora_recipe(profile) if ic_lora else profile
        preset = PRESETS.get(self.preset or "")
        guidance = self.guidance_scale if self.guidance_scale is not None else profile.guidance_scale
        return Job(
            job_id=self.job_id,
            task=task,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt if self.negative_prompt is not None else profile.negative_prompt,
            image_uri=self.image_uri,
            keyframes=sorted(self.keyframes or [], key=lambda k: k.frame),
            keyframe_time="exact" if self.keyframes else "latent_grid",
            video_uri=self.video_uri,
            strength=self.strength if self.strength is not None else DEFAULT_V2V_STRENGTH,
            audio_uri=self.audio_uri,
            control=self.control,
            control_uri=self.control_uri,
            ic_lora=self.ic_lora,
            loras=self.loras or [],
            preset=self.preset,
            two_stage=self.resolved_two_stage(),
            segment_frames=self.segment_frames or DEFAULT_SEGMENT_FRAMES,
            width=self.width or (preset.width if preset else DEFAULT_WIDTH),
            height=self.height or (preset.height if preset else DEFAULT_HEIGHT),
            num_frames=self.resolved_num_frames(),
            auto_seconds=self.auto_seconds(),
            retake=self._retake() if task == "retake" else None,
            # a2v without a length takes the audio's (set when the audio is fetched)
            num_frames_from_audio=task == "a2v" and self.num_frames is None and self.seconds is None,
            fps=self.resolved_fps(),
            seed=self.seed if self.seed is not None else stable_seed(self.job_id),
            steps=self.steps or profile.steps,
            guidance_scale=guidance,
            profile=profile.name,
            # guidance_scale <= 1 asks for no guidance at all: one pass per step, as a distilled
            # model runs (diffusers would still add audio CFG, STG and modality passes).
            video_guidance=profile.video.model_copy(update={"cfg": guidance}) if guidance > 1 else UNGUIDED,
            # a2v holds the given track frozen: no audio guidance, as a2vid_two_stage.py's audio
            # guider (MultiModalGuiderParams() defaults); the video keeps the profile's stack.
            audio_guidance=profile.audio if guidance > 1 and task != "a2v" else UNGUIDED,
            stg_blocks=profile.stg_blocks,
            cross_timestep=profile.cross_timestep,
            schedule=profile.schedule,
            distilled_lora=profile.distilled_lora if self.resolved_two_stage() else None,
            stage_1_lora=stage_1_lora,
            audio=True if self.audio is None else self.audio,
            decoder=self.decoder or "conv",
            enhance_prompt=bool(self.enhance_prompt),
            metadata=json.loads(self.metadata) if self.metadata else {},
            qc=self.qc,
        )
