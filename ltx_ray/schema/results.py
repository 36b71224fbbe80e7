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
    dispatch_attempts: int | None = Field(
        default=None, description="Replicas the job was handed to (more than 1 when a replica died or lost its GPU "
        "while generating it; failed after 3)")
    job_hash: str | None = Field(default=None, description="sha256 of `recipe`: a rerun skips the job while it is unchanged")
    recipe: str | None = Field(
        default=None, description="JSON of what the job_hash is taken over (the resolved job without its defaults, "
        "the model and its revision): a rerun names what changed"
    )
    node_id: str | None = Field(default=None, description="Ray node that generated the job")
    worker: str | None = Field(default=None, description="host:pid of the worker process")
    pool: str | None = Field(default=None, description="The --pool whose replica generated the job (routed by its size)")
    run_id: str | None = None
    finished_at: str | None = None

    def to_arrow_row(self) -> dict:
        row = self.model_dump()
        row["timings"] = list(self.timings.items())
        row["metadata"] = json.dumps(self.metadata)
        row["passthrough"] = json.dumps(self.passthrough)
        row["qc"] = json.dumps(self.qc) if self.qc is not None else None
        return row


def recipe(job: Job, model: ResolvedModel) -> dict:
    """What a job would produce, as data: the resolved job, the model and its revision.

    Fields at their default are left out, so a parameter that a later ltx-ray adds with a
    default that keeps the old behaviour does not change the hash of rows finished before it.
    (A real change always shows: the old or the new value differs from the default.) It
    lives here, beside the row that records it, so that resuming (batch.run) never imports torch.
    """
    return {
        "job": job.model_dump(mode="json", exclude={"metadata", "passthrough", "qc"}, exclude_defaults=True),
        "model": model.model_id,
        "rev": model.revision,
    }


def job_hash(job: Job, model: ResolvedModel) -> str:
    """Fingerprint of what a job would produce: a changed row or model means a new video."""
    return hash_recipe(recipe(job, model))


def hash_recipe(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def recipe_changes(old: str | None, new: dict, job_type: type[BaseModel]) -> list[str]:
    """What differs between a finished row's recorded recipe (JSON) and a job's new one, as
    ``field: old -> new`` lines (nested fields dotted, long values cut)."""
    if old is None:
        return ["no recipe recorded (finished by an earlier ltx-ray)"]
    before = json.loads(old)
    lines = [f"{k}: {_short(before.get(k))} -> {_short(new[k])}" for k in ("model", "rev") if before.get(k) != new[k]]
    a, b = _flat(_with_defaults(before.get("job", {}), job_type)), _flat(_with_defaults(new["job"], job_type))
    lines += [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return lines


def _with_defaults(job: dict, job_type: type[BaseModel]) -> dict:
    full = {}
    for name, field in job_type.model_fields.items():
        if name in job:
            full[name] = job[name]
        elif not field.is_required():
            default = field.get_default(call_default_factory=True)
            full[name] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
    return full | {k: v for k, v in job.items() if k not in full}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
