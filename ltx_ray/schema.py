"""Manifest schema v1: the single source of truth for what a manifest row may hold.

``ManifestRow`` is what a Parquet row (or an HTTP request) says; ``Job`` is that row with
every default resolved, the form every later stage works on. ``manifests/SCHEMA.md`` is
generated from the field descriptions below (``ltx-ray schema-doc``), so the two cannot
drift.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ltx_ray.qc import QCConfig

SCHEMA_VERSION = 1
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
TASKS = ("t2v", "i2v", "keyframes", "v2v", "extend", "a2v", "control")
Task = Literal["t2v", "i2v", "keyframes", "v2v", "extend", "a2v", "control"]
CONTROLS = ("depth", "pose", "canny")
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


def stable_seed(job_id: str) -> int:
    """The default seed: a stable hash of the job id, so the same job gives the same video."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class Keyframe(BaseModel):
    """One guide image placed at a frame of the output video."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The image: a local path, file://, s3://, gs:// or http(s):// URI.")
    frame: int = Field(
        ge=0,
        description="Index of the output frame this image should become (0-based). LTX-2 places "
        "keyframes on its 8-frame latent grid: frame 0 is exact, frame F > 0 takes effect at frame "
        "8 * ((F - 1) // 8) + 1 (exact for 1, 9, 17, ...); the sidecar records where each landed.",
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
# refine them with the distilled schedule (shared/notes/ltx2.md, "Two-stage").
PRESETS = {
    "fast": Preset(width=1280, height=704, fps=24.0, max_fps=50.0, two_stage=False),
    "pro": Preset(width=1920, height=1088, fps=24.0, max_fps=48.0, two_stage=True),
    "ultra": Preset(width=3840, height=2176, fps=24.0, max_fps=50.0, two_stage=True),
}


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
        description="`t2v`, `i2v`, `keyframes`, `v2v`, `extend`, `a2v` or `control`. When absent it is inferred "
        "from the one conditioning input given: control_uri -> control, audio_uri -> a2v, video_uri -> v2v "
        "(`extend` must be named), keyframes -> keyframes, image_uri -> i2v, none -> t2v. An explicit task that "
        "contradicts the inputs is an error.",
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
        description="Source clip (mp4, mov, webm) for `v2v` (the output follows it, restyled by the prompt) or "
        "`extend` (the output is the clip followed by its continuation).",
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
        description="The IC-LoRA (.safetensors) trained for that control; its `reference_downscale_factor` "
        "metadata, when present, sets the control video's scale.",
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
    seconds: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        le=MAX_FRAMES / DEFAULT_FPS,
        description="Duration in seconds, converted to the nearest valid frame count at `fps`.",
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
        return _TASK_OF_INPUT[given[0]] if given else "t2v"

    @model_validator(mode="after")
    def _consistent(self) -> ManifestRow:
        if self.num_frames is not None and self.seconds is not None:
            raise ValueError("num_frames: is given together with seconds; give only one of them")
        given = self.inputs_given()
        if len(given) > 1:
            raise ValueError(f"{given[1]}: is given together with {given[0]}; a row takes one conditioning input")
        inferred = self.inferred_task()
        allowed = {inferred, "extend"} if inferred == "v2v" else {inferred}
        if self.task is not None and self.task not in allowed:
            raise ValueError(
                f"task: the row gives {_NEEDS[inferred]}; "
                f"a {self.task} job needs {_NEEDS[self.task]} (or leave task empty to infer {inferred!r})"
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
        if self.keyframes:
            frames = [k.frame for k in self.keyframes]
            total = self.resolved_num_frames()
            if len(set(frames)) != len(frames):
                raise ValueError(f"keyframes: frames {frames} repeat a frame; give each frame at most once")
            if frames != sorted(frames):
                raise ValueError(f"keyframes: frames {frames} are out of order; list keyframes by increasing frame")
            if max(frames) >= total:
                raise ValueError(
                    f"keyframes: frame {max(frames)} is outside the video of {total} frames; "
                    f"use 0..{total - 1} or raise num_frames"
                )
            if total > (self.segment_frames or DEFAULT_SEGMENT_FRAMES):
                raise ValueError("keyframes: keyframes place frames in one segment; shorten the video or raise segment_frames")
        return self

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
        if self.seconds is not None:
            return frames_for_seconds(self.seconds, self.resolved_fps())
        return DEFAULT_NUM_FRAMES

    def resolve(self, defaults: ModelDefaults) -> Job:
        """Every default filled in: what will actually be generated."""
        task = self.task or self.inferred_task()
        preset = PRESETS.get(self.preset or "")
        return Job(
            job_id=self.job_id,
            task=task,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt if self.negative_prompt is not None else defaults.negative_prompt,
            image_uri=self.image_uri,
            keyframes=sorted(self.keyframes or [], key=lambda k: k.frame),
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
            # a2v without a length takes the audio's (set when the audio is fetched)
            num_frames_from_audio=task == "a2v" and self.num_frames is None and self.seconds is None,
            fps=self.resolved_fps(),
            seed=self.seed if self.seed is not None else stable_seed(self.job_id),
            steps=self.steps or defaults.steps,
            guidance_scale=self.guidance_scale if self.guidance_scale is not None else defaults.guidance_scale,
            audio=True if self.audio is None else self.audio,
            metadata=json.loads(self.metadata) if self.metadata else {},
            qc=self.qc,
        )


class ModelDefaults(BaseModel):
    """Generation defaults that belong to a model (read from its card, else LTX-2.0's)."""

    steps: int = 40
    guidance_scale: float = 3.0
    negative_prompt: str = ""
    # Extra keyword arguments for the diffusers call that depend on the model's depth
    # (e.g. which block gets spatio-temporal guidance).
    call_kwargs: dict[str, Any] = Field(default_factory=dict)


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
        """Relative GPU cost of the job: video tokens x steps x passes (what run.py orders by)."""
        return self.video_tokens * self.steps * self.transformer_passes


_TASK_OF_INPUT = {
    "control_uri": "control", "audio_uri": "a2v", "video_uri": "v2v", "keyframes": "keyframes", "image_uri": "i2v",
}
_NEEDS = {
    "t2v": "no conditioning input", "i2v": "image_uri", "keyframes": "keyframes", "v2v": "video_uri",
    "extend": "video_uri", "a2v": "audio_uri", "control": "control_uri",
}


class RowProblem(BaseModel):
    """One thing wrong with one manifest row, phrased for the person who wrote it."""

    job_id: str
    field: str
    value: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}job {self.job_id!r}: {self.field} = {self.value}: {self.message}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems_from_validation_error(row: dict, exc: ValidationError, source: str = "") -> list[RowProblem]:
    """Turn pydantic's errors into RowProblems naming job, field, value and fix."""
    job_id = str(row.get("job_id")) if row.get("job_id") is not None else "<missing job_id>"
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) if loc else "row"
        value: Any = row
        for part in err["loc"]:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = err.get("input")
                break
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "missing":
            msg = "is required; add the column and a value for every row"
            value = None
        elif err["type"] == "extra_forbidden":
            msg = "is not a manifest column; remove it, or prefix it with x_ to keep it as pass-through"
        elif err["type"] == "string_pattern_mismatch" and loc == ["job_id"]:
            msg = (
                "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(it names the output files)"
            )
        if not loc and ": " in msg:
            # row-level checks name their field first: "FIELD: message"
            field, msg = msg.split(": ", 1)
            value = row.get(field)
        out.append(RowProblem(job_id=job_id, field=field, value=_short(value), message=msg, source=source))
    return out
