"""The wire contract of the /v1/videos API: request settings, the Video object, errors.

The Video object follows the OpenAI Videos convention (docs/serve.md): every
key is present, null where unset, and ``status`` is only queued / in_progress / completed /
failed. ltx-ray adds a few keys of its own after those (kept by the SDK in
``video.model_extra``). ``JobRecord`` is what the job store persists for each video.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

VIDEO_ID_PATTERN = re.compile(r"^video_[0-9a-f]{32}$")
Status = Literal["queued", "in_progress", "completed", "failed"]
ErrorType = Literal[
    "invalid_request_error", "authentication_error", "not_found_error", "request_too_large",
    "rate_limit_error", "server_error",
]


class VideoError(BaseModel):
    """Why a video failed, as the convention shapes it."""

    code: str = Field(description="Machine-readable cause: generation_failed, worker_died, ...")
    message: str = Field(description="What went wrong and, where there is one, the fix.")


class Video(BaseModel):
    """One video job as clients see it (``object: "video"``)."""

    id: str = Field(description="video_ followed by 32 hex digits.")
    object: Literal["video"] = "video"
    status: Status = Field(description="queued, in_progress, completed or failed.")
    progress: int = Field(ge=0, le=100, description="Percent done; moves with the denoising steps.")
    created_at: int = Field(description="Unix seconds when the job was accepted.")
    completed_at: int | None = Field(default=None, description="Unix seconds when it completed or failed.")
    expires_at: int | None = Field(default=None, description="Always null: outputs are kept until deleted.")
    model: str | None = Field(default=None, description="The model named in the request, else the served model.")
    prompt: str | None = None
    seconds: str | None = Field(default=None, description="Duration, as a string (the convention's type).")
    size: str | None = Field(default=None, description="WIDTHxHEIGHT.")
    remixed_from_video_id: str | None = None
    error: VideoError | None = None
    # ltx-ray extensions, after the convention's keys.
    task: str | None = Field(default=None, description="The task: t2v, i2v, keyframes, v2v, extend, a2v, control or retake.")
    num_frames: int | None = None
    fps: float | None = None
    seed: int | None = None
    attempt: int = Field(default=1, description="1 for the first run; more when a dead worker's job was re-queued.")


class VideoList(BaseModel):
    """A page of ``GET /v1/videos``; the next page is ``after=last_id``."""

    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorBody(BaseModel):
    message: str
    type: ErrorType
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error response: ``{"error": {message, type, param, code}}``."""

    error: ErrorBody


class APIError(Exception):
    """Raised anywhere in the HTTP layer; becomes an ErrorEnvelope with ``status``."""

    TYPES: dict[int, ErrorType] = {
        400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
        413: "request_too_large", 429: "rate_limit_error",
    }

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=self.TYPES.get(status, "server_error"), param=param, code=code)

    def envelope(self) -> dict[str, Any]:
        return ErrorEnvelope(error=self.body).model_dump()


def not_found(video_id: str) -> APIError:
    return APIError(404, f"no video with id {video_id!r}", param="video_id", code="video_not_found")


class JobRecord(BaseModel):
    """What the job store keeps for one video: its public state plus what a worker needs."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: Status = "queued"
    progress: int = 0
    created_at: int = Field(default_factory=lambda: int(time.time()))
    seq: int = Field(default_factory=time.time_ns, description="Creation order, finer than created_at.")
    completed_at: int | None = None
    updated_at: float = Field(default_factory=time.time)
    model: str | None = None
    prompt: str
    seconds: str | None = None
    size: str
    error: VideoError | None = None
    row: dict[str, Any] = Field(description="The validated ManifestRow (non-null fields) the worker generates.")
    task: str
    num_frames: int
    fps: float
    seed: int
    attempt: int = Field(default=1, description="Fencing token: only the worker holding this attempt may write.")
    worker: str | None = None
    lease_owner: str | None = Field(default=None, description="Who holds the job: the ingress replica dispatching it "
                                    "(queued) or the generator replica running it (in_progress).")
    lease_expires_at: float | None = Field(default=None, description="Unix seconds; the holder's heartbeats move it on. "
                                           "Past it, any ingress replica may take the job back.")
    progress_at: float | None = Field(default=None, description="When progress last moved (a heartbeat is not progress).")

    def to_video(self) -> Video:
        return Video(
            id=self.id, status=self.status, progress=self.progress, created_at=self.created_at,
            completed_at=self.completed_at, model=self.model, prompt=self.prompt, seconds=self.seconds,
            size=self.size, error=self.error, task=self.task, num_frames=self.num_frames, fps=self.fps,
            seed=self.seed, attempt=self.attempt,
        )
