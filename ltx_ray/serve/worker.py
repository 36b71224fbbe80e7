"""The generator side: run one queued video job with the batch path's ``JobRunner``.

The worker claims a queued job with a compare-and-swap (so of two replicas handed the same
job, one runs it and the other answers ``skipped``), then holds it with a lease its
heartbeat renews (``ltx_ray.serve.lease``), and through its ``attempt`` (a fencing token):
each write checks that the record still has this attempt and no tombstone, so a deleted job
stops at the next denoising step and a re-queued job is never overwritten by an older worker.
"""

from __future__ import annotations

import time

from pydantic import ValidationError

from ltx_ray.errors import ReplicaFatal
from ltx_ray.job.runner import JobRunner, end_replica
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.serve.jobs import JobAbandoned, JobStore
from ltx_ray.serve.lease import Heartbeat, held, new_holder
from ltx_ray.serve.protocol import JobRecord, VideoError
from ltx_ray.storage.manifest import model_problem

# Progress while denoising runs to this percent; decode, mux and upload fill the rest.
DENOISE_SHARE = 90


class VideoWorker:
    """Runs jobs from a JobStore on one JobRunner (one loaded engine)."""

    def __init__(self, jobs: JobStore, runner: JobRunner, defaults: ModelProfile, lease_s: float = 30.0):
        self.jobs = jobs
        self.runner = runner
        self.defaults = defaults
        self.lease_s = lease_s
        self.holder = new_holder("generator")

    def _invalid(self, video_id: str, attempt: int, message: str) -> str:
        error = VideoError(code="invalid_job", message=message[:2000])
        self.jobs.update(video_id, attempt, status="failed", completed_at=int(time.time()), error=error)
        return "failed"

    def run(self, video_id: str, attempt: int) -> str:
        """Generate one job; returns its final status, or 'abandoned' / 'skipped'."""

        def claim(record: JobRecord) -> JobRecord | None:
            if record.attempt != attempt or record.status != "queued":
                return None  # re-queued since, already claimed by another replica, or done
            return record.model_copy(update={"status": "in_progress", "progress": 0, "worker": self.runner.worker,
                                             "progress_at": time.time(), **held(self.holder, self.lease_s)})

        record = self.jobs.change(video_id, claim)
        if record is None:
            return "skipped"
        with Heartbeat(self.jobs, video_id, attempt, self.holder, self.lease_s) as heartbeat:
            return self._run(video_id, attempt, record, heartbeat)

    def _run(self, video_id: str, attempt: int, record: JobRecord, heartbeat: Heartbeat) -> str:
        try:
            row = ManifestRow.model_validate({"job_id": video_id, **record.row})
        except ValidationError as exc:  # a record from an older schema: deterministic, never retried
            return self._invalid(video_id, attempt, f"the stored job no longer validates: {exc}")
        job = row.resolve(self.defaults)
        # What this model cannot serve (a variant it lacks, enhance_prompt without an enhancer, ...).
        if problem := model_problem(row, job, self.defaults, f"video {video_id}", self.runner.model.enhancer is not None):
            return self._invalid(video_id, attempt, f"{problem.field} = {problem.value}: {problem.message}")
        last = [-1]

        def on_step(step: int, total: int) -> None:
            # Never backwards: a QC retry denoises again from step 1.
            progress = max(last[0], min(DENOISE_SHARE, step * DENOISE_SHARE // max(1, total)))
            if heartbeat.lost:
                raise JobAbandoned(f"video {video_id}: attempt {attempt} was taken back or deleted")
            if progress != last[0]:
                last[0] = progress
                # Raises JobAbandoned (re-queued or deleted): stops the pipeline.
                self.jobs.update(video_id, attempt, progress=progress, progress_at=time.time())
            elif self.jobs.is_deleted(video_id):
                raise JobAbandoned(f"video {video_id} was deleted")

        try:
            result = self.runner.run(job, on_step)
        except ReplicaFatal as exc:  # the GPU is lost: Serve replaces this replica, the ingress re-queues the job
            end_replica(exc)
        if self.jobs.is_deleted(video_id):
            self.jobs.purge(video_id)
            return "abandoned"
        done = {"completed_at": int(time.time()), "lease_owner": None, "lease_expires_at": None}
        try:
            if result.status == "succeeded":
                self.jobs.update(video_id, attempt, status="completed", progress=100, **done)
                return "completed"
            error = VideoError(code="generation_failed", message=f"{result.error_stage}: {result.error}")
            self.jobs.update(video_id, attempt, status="failed", error=error, **done)
            return "failed"
        except JobAbandoned:
            return "abandoned"
