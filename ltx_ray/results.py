"""The results table: one Parquet file per job under ``{out}/results/``, named by job_id.

One file per job means a worker commits its row the moment the job ends (a crash loses
nothing finished), and a rerun overwrites instead of duplicating. ``pyarrow.parquet.read_table(
f"{out}/results")`` reads them all as one table.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from ltx_ray.storage import OutputStore

if TYPE_CHECKING:
    from ltx_ray.model_source import ResolvedModel
    from ltx_ray.schema import Job

RESULTS_DIR = "results"

ARROW_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("error_stage", pa.string()),
        ("task", pa.string()),
        ("video_uri", pa.string()),
        ("sidecar_uri", pa.string()),
        ("thumbnail_uri", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("num_frames", pa.int64()),
        ("fps", pa.float64()),
        ("duration_s", pa.float64()),
        ("audio_sample_rate", pa.int64()),
        ("seed", pa.int64()),
        ("model", pa.string()),
        ("timings", pa.map_(pa.string(), pa.float64())),
        ("metadata", pa.string()),
        ("passthrough", pa.string()),
        ("qc", pa.string()),
        ("attempts", pa.int64()),
        ("job_hash", pa.string()),
        ("node_id", pa.string()),
        ("worker", pa.string()),
        ("run_id", pa.string()),
        ("finished_at", pa.string()),
    ]
)


class ResultRow(BaseModel):
    """One job's outcome, as it appears in the results table."""

    job_id: str
    status: Literal["succeeded", "failed"]
    error: str | None = Field(default=None, description="What went wrong, naming the field, value and fix")
    error_stage: str | None = Field(default=None, description="validate, fetch_inputs, generate, mux, upload")
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

    It lives here, beside the row that records it, so that resuming (run.py) and light
    workers never import torch.
    """
    spec = {"job": job.model_dump(mode="json", exclude={"metadata", "passthrough", "qc"}), "model": model.model_id, "rev": model.revision}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def result_name(key: str) -> str:
    return f"{RESULTS_DIR}/{key}.parquet"


def write_result(store: OutputStore, key: str, row: ResultRow) -> str:
    """Commit one job's results row (atomically, under its key)."""
    table = pa.Table.from_pylist([row.to_arrow_row()], schema=ARROW_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return store.put(result_name(key), sink.getvalue().to_pybytes())


def read_results(store: OutputStore) -> pa.Table:
    """Every results row under the output root (an empty table when there are none)."""
    if not store.exists(RESULTS_DIR):
        return ARROW_SCHEMA.empty_table()
    # pyarrow skips the hidden ".partial" files of writes in flight.
    return pq.read_table(store.path(RESULTS_DIR), filesystem=store.fs, schema=ARROW_SCHEMA)
