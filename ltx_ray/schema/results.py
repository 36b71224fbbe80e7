"""One job's outcome, as a row of the results table (written by ltx_ray.storage.results)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from ltx_ray.schema.job import Job
    from ltx_ray.schema.model import ResolvedModel


# Where a failed job stopped, in the order a job meets them: the driver's checks, then the
# stages of ltx_ray.job.runner.JobRunner.run.
ERROR_STAGES = {
    "validate": "the manifest row is invalid (the driver's check; nothing was generated)",
    "recipe": "a recipe could not turn the product row into a job",
    "fetch_inputs": "an input (image, video, audio, LoRA) could not be read or decoded",
    "generate": "the model failed (out of memory, a bad LoRA, ...)",
    "mux": "the mp4, thumbnail or preview could not be written",
    "qc": "every attempt failed a quality check (the last video is kept under rejected/)",
    "upload": "the outputs could not be written to --out",
    "write_metadata": "the JSON sidecar could not be written",
}
ErrorStage = Literal[tuple(ERROR_STAGES)]  # type: ignore[valid-type]


class ResultRow(BaseModel):
    """One job's outcome, as it appears in the results table."""

    job_id: str
    status: Literal["succeeded", "failed"]
    error: str | None = Field(default=None, description="What went wrong, naming the field, value and fix")
    error_stage: ErrorStage | None = Field(
        default=None, description="Where a failed job stopped: " + "; ".join(f"`{k}`: {v}" for k, v in ERROR_STAGES.items())
    )
    task: str | None = None
    video_uri: str | None = None
    sidecar_uri: str | None = None
    thumbnail_uri: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    audio_sample_rate: int | None = None
    seed: int | None = None
    model: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    passthrough: dict[str, Any] = Field(default_factory=dict)
    qc: dict[str, Any] | None = Field(
        default=None, description="Quality checks: {passed, config, attempts: [{attempt, seed, pass, checks}]}; null when off"
    )
    attempts: int | None = Field(default=None, description="Videos generated for this job (more than 1 when QC retried)")
    job_hash: str | None = None
    node_id: str | None = Field(default=None, description="Ray node that generated the job")
    worker: str | None = Field(default=None, description="host:pid of the worker process")
    run_id: str | None = None
    finished_at: str | None = None

    def to_arrow_row(self) -> dict:
        row = self.model_dump()
        row["timings"] = list(self.timings.items())
        row["metadata"] = json.dumps(self.metadata)
        row["passthrough"] = json.dumps(self.passthrough)
        row["qc"] = json.dumps(self.qc) if self.qc is not None else None
        return row


def job_hash(job: Job, model: ResolvedModel) -> str:
    """Fingerprint of what a job would produce: a changed row or model means a new video.

    It lives here, beside the row that records it, so that resuming (batch.run) and light
    workers never import torch.
    """
    spec = {"job": job.model_dump(mode="json", exclude={"metadata", "passthrough", "qc"}), "model": model.model_id, "rev": model.revision}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
