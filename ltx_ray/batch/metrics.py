"""What a batch run exports for a cluster operator, through Ray's metrics API.

Ray serves every process's metrics on its node's metrics export port
(``http://NODE:PORT/metrics``, Prometheus text; ``ray start --metrics-export-port``), with
the prefix ``ray_`` and, for counters, the suffix ``_total``:

- ``ray_ltx_ray_jobs_total{status, error_stage, task}``: jobs finished. ``error_stage`` is
  where a failed job stopped (ltx_ray.schema.results.ERROR_STAGES), empty for a success.
- ``ray_ltx_ray_generation_seconds{task}``: a histogram of each job's generate time (the
  results row's ``timings.generate``, QC retries included): ``_bucket`` for quantiles,
  ``_count``. Its ``_sum`` is approximate (Ray 2.60's agent rebuilds it from bucket
  midpoints); the exact GPU time is the counter below.
- ``ray_ltx_ray_gpu_seconds_total{task}``: generate time x GPUs per replica, as the run
  summary counts it.

Each generation actor counts the jobs it ran, where it ran them, so the series come from the
GPU nodes and need no driver; rows that fail validation never reach an actor, and the driver
counts them (when the run has jobs to generate: that is when it joins Ray). Counters are per
process (Ray adds a ``WorkerId`` label), cumulative, and kept by the node's agent after the
process ends (a process flushes when it exits): sum them, and take ``rate``/``increase``. A job that Ray Data runs again after losing a node's output is
counted again (the GPU did the work twice); the run summary counts each job once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ltx_ray.schema.results import ResultRow

# Seconds: distilled 8-step clips on an H100 take ~10 s, guided 40-step 4K clips many minutes.
GENERATION_BUCKETS_S = [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600]


class JobMetrics:
    """The run's metrics, recorded from one process (a generation actor, or the driver).

    Ray metrics belong to the process that creates them: each actor makes its own in its
    ``__init__``, never at import (a module-level metric would be made in the driver too).
    """

    def __init__(self, gpus_per_replica: float = 0.0):
        from ray.util.metrics import Counter, Histogram

        self.gpus_per_replica = gpus_per_replica
        self.jobs = Counter(
            "ltx_ray_jobs", description="Jobs finished, by status and, for a failed one, the stage it failed at.",
            tag_keys=("status", "error_stage", "task"),
        )
        self.generation_seconds = Histogram(
            "ltx_ray_generation_seconds", description="Seconds each job spent generating (denoise and decode, QC retries "
            "included).", boundaries=GENERATION_BUCKETS_S, tag_keys=("task",),
        )
        self.gpu_seconds = Counter(
            "ltx_ray_gpu_seconds", description="Generation seconds x GPUs per replica: the GPU time the jobs used.",
            tag_keys=("task",),
        )

    def job_done(self, row: ResultRow) -> None:
        """Count one finished job (succeeded or failed) and the generation time it used."""
        task = row.task or ""
        self.jobs.inc(tags={"status": row.status, "error_stage": row.error_stage or "", "task": task})
        seconds = row.timings.get("generate") or 0.0
        if seconds > 0:
            self.generation_seconds.observe(seconds, tags={"task": task})
            if self.gpus_per_replica > 0:
                self.gpu_seconds.inc(seconds * self.gpus_per_replica, tags={"task": task})

    def invalid_rows(self, count: int) -> None:
        """Count rows that failed the driver's validation (no actor ever sees them)."""
        if count > 0:
            self.jobs.inc(count, tags={"status": "failed", "error_stage": "validate", "task": ""})
