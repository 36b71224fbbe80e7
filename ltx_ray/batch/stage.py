"""Ray Data side of a run: jobs file -> one row per block -> generation actors -> result rows.

The stage follows ``ray.data.llm``: a class that loads its model once per actor, one row
in and one row out, fatal errors (the model does not load) raised, row errors returned as
data. Frames and mp4 bytes never travel through the object store: the actor uploads them
and returns a small metadata row.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from ltx_ray.errors import ReplicaFatal
from ltx_ray.schema.job import Job

if TYPE_CHECKING:
    from ltx_ray.batch.pool import Replicas
    from ltx_ray.job.build import RunnerSpec

RESULT_COLUMNS = ("job_id", "status", "error", "error_stage", "video_uri", "duration_s", "timings", "pool")


class GenerationStage:
    """Holds one LTX-2 engine (built by ltx_ray.job.build); turns a batch of jobs into a batch of result rows."""

    def __init__(self, config: dict, gpus_per_replica: float = 0.0):
        import ray

        from ltx_ray.batch.metrics import JobMetrics
        from ltx_ray.job.build import RunnerSpec
        from ltx_ray.replica.group import start_replica

        # One rank, or rank 0 of a group (--parallel): either way one JobRunner, one row per job.
        self.runner = start_replica(RunnerSpec.model_validate(config), node_id=ray.get_runtime_context().get_node_id())
        self.metrics = JobMetrics(gpus_per_replica)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {c: [] for c in RESULT_COLUMNS}
        for job_json in batch["job"]:
            job = Job.model_validate_json(job_json)
            try:
                row = self.runner.run(job)
            except ReplicaFatal as exc:  # this replica is broken: a new one retries the job
                from ltx_ray.job.runner import end_replica

                end_replica(exc)
            self.metrics.job_done(row)
            out["job_id"].append(row.job_id)
            out["status"].append(row.status)
            out["error"].append(row.error)
            out["error_stage"].append(row.error_stage)
            out["video_uri"].append(row.video_uri)
            out["duration_s"].append(row.duration_s)
            out["timings"].append(json.dumps(row.timings))
            out["pool"].append(row.pool)
        if len(out["job_id"]) != len(batch["job"]):
            raise RuntimeError("generation stage must return exactly one row per job")
        return out


def configure_data_context(no_progress_timeout_s: float) -> None:
    """Ray Data knobs a long GPU run needs, each set on purpose."""
    from ray.data import DataContext

    from ltx_ray.batch.pool import configure_autoscaling

    ctx = DataContext.get_current()
    # An actor that dies while loading weights (a node preempted, a transient OOM) is
    # replaced a couple of times; a model that can never load still fails the run quickly.
    ctx.max_consecutive_actor_init_deaths = 2
    # A job is one task, and real jobs can take many minutes each; only a run that makes no
    # progress at all for this long is declared hung (the default 30 min is too short for
    # a 4K clip on one replica).
    ctx.execution_no_progress_timeout_s = no_progress_timeout_s
    # Row errors are caught in the stage and returned as data, so an exception that escapes
    # it is a bug: fail rather than silently drop the rows of that block.
    ctx.max_errored_blocks = 0
    # Wait for GPU workers an autoscaler is still bringing up, but not forever.
    ctx.wait_for_min_actors_s = 1800
    # --replicas MIN:MAX: grow the pool whenever every replica is busy and jobs wait.
    configure_autoscaling(ctx)


def build_dataset(
    jobs_uri: str,
    filesystem,
    num_jobs: int,
    worker: RunnerSpec,
    *,
    replicas: Replicas,
    gpus_per_replica: float,
    cpus_per_replica: float,
    resources_per_replica: dict[str, float] | None = None,
    tasks_in_flight: int = 1,
    pool: str | None = None,
):
    """The Ray Data plan of a run (or of one ``pool``'s rows), from the jobs file to result rows."""
    import ray.data
    from ray.data.expressions import col

    from ltx_ray.batch.pool import actor_pool

    ds = ray.data.read_parquet(jobs_uri, filesystem=filesystem)
    if pool is not None:
        ds = ds.filter(expr=col("pool") == pool)
    # A few thousand small rows are one block, and a block is never split across actors:
    # one block per row lets every actor take work (docs/batch.md, "Fan-out").
    ds = ds.repartition(num_blocks=max(1, num_jobs))
    return ds.map_batches(
        GenerationStage,
        fn_constructor_kwargs={"config": worker.model_dump(), "gpus_per_replica": gpus_per_replica},
        batch_size=1,
        compute=actor_pool(replicas, tasks_in_flight),
        num_gpus=gpus_per_replica,
        num_cpus=cpus_per_replica,
        resources=resources_per_replica or None,
    )
