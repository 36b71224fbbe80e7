"""Ray Data side of a run: jobs file -> one row per block -> generation actors -> result rows.

The stage follows ``ray.data.llm``: a class that loads its model once per actor, one row
in and one row out, fatal errors (the model does not load) raised, row errors returned as
data. Frames and mp4 bytes never travel through the object store: the actor uploads them
and returns a small metadata row.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import BaseModel

from ltx_ray.schema import Job

RESULT_COLUMNS = ("job_id", "status", "error", "error_stage", "video_uri", "duration_s", "timings")


class WorkerConfig(BaseModel):
    """What every generation actor needs to build its engine and store."""

    model: str
    out: str
    device: str = "cpu"
    dtype: str = "float32"
    run_id: str
    torch_threads: int | None = None
    # "ltx2", or "module:callable" building another engine with the same generate()
    # interface (benchmarks use a simulated one; see bench/).
    engine: str = "ltx2"
    offload: str = "auto"
    # None, or "module:callable" building a stand-in for the whole JobRunner (called with
    # config=WorkerConfig, node_id=str; returns an object whose run(job) gives a ResultRow).
    # Scheduling benchmarks (bench/fleet.py, bench/capacity.py) run dozens of actors on a
    # few cores: a stand-in engine would still import torch and mux an mp4 per job, which
    # measures the benchmark machine instead of the schedule. The Ray Data plan is unchanged.
    runner: str | None = None


class GenerationStage:
    """Holds one LTX-2 engine; turns a batch of jobs into a batch of result rows."""

    def __init__(self, config: dict):
        import ray

        cfg = WorkerConfig.model_validate(config)
        node_id = ray.get_runtime_context().get_node_id()
        if cfg.runner:
            self.runner = _load(cfg.runner)(config=cfg, node_id=node_id)
            return

        import torch

        from ltx_ray.generate import JobRunner
        from ltx_ray.ltx2 import LTX2Engine
        from ltx_ray.model_source import resolve_model
        from ltx_ray.storage import OutputStore

        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        model = resolve_model(cfg.model)
        if cfg.engine == "ltx2":
            engine = LTX2Engine(
                model.path, device=cfg.device, dtype=cfg.dtype, defaults=model.defaults, offload=cfg.offload
            )
        else:
            engine = _load(cfg.engine)(model=model, device=cfg.device, dtype=cfg.dtype)
        self.runner = JobRunner(
            engine, OutputStore(cfg.out), model, device=cfg.device, dtype=cfg.dtype, run_id=cfg.run_id, node_id=node_id
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {c: [] for c in RESULT_COLUMNS}
        for job_json in batch["job"]:
            job = Job.model_validate_json(job_json)
            row = self.runner.run(job)
            out["job_id"].append(row.job_id)
            out["status"].append(row.status)
            out["error"].append(row.error)
            out["error_stage"].append(row.error_stage)
            out["video_uri"].append(row.video_uri)
            out["duration_s"].append(row.duration_s)
            out["timings"].append(json.dumps(row.timings))
        if len(out["job_id"]) != len(batch["job"]):
            raise RuntimeError("generation stage must return exactly one row per job")
        return out


def _load(spec: str):
    """The object named by "module:attribute"."""
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def configure_data_context(no_progress_timeout_s: float) -> None:
    """Ray Data knobs a long GPU run needs, each set on purpose."""
    from ray.data import DataContext

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


def build_dataset(
    jobs_uri: str,
    filesystem,
    num_jobs: int,
    worker: WorkerConfig,
    *,
    replicas: int,
    gpus_per_replica: float,
    cpus_per_replica: float,
    resources_per_replica: dict[str, float] | None = None,
    tasks_in_flight: int = 1,
):
    """The Ray Data plan of a run, from the jobs file to result rows."""
    import ray.data

    ds = ray.data.read_parquet(jobs_uri, filesystem=filesystem)
    # A few thousand small rows are one block, and a block is never split across actors:
    # one block per row lets every actor take work (the fan-out trap, shared/notes/ray.md).
    ds = ds.repartition(num_blocks=max(1, num_jobs))
    return ds.map_batches(
        GenerationStage,
        fn_constructor_kwargs={"config": worker.model_dump()},
        batch_size=1,
        # A fixed pool starts every replica at once; one task in flight per actor keeps a
        # minute-long job from queueing behind another on a busy actor. The price is Ray
        # Data's dispatch gap (its loop polls every 0.1 s) between two jobs on one actor,
        # negligible for GPU jobs of tens of seconds (bench/fleet.py measures both settings).
        # With two in flight the calls run on two threads: job k muxes and uploads while
        # job k+1 denoises (JobRunner lets one job at a time use the engine).
        compute=ray.data.ActorPoolStrategy(
            size=replicas,
            max_tasks_in_flight_per_actor=tasks_in_flight,
            max_concurrent_calls_per_actor=tasks_in_flight,
            enable_true_multi_threading=tasks_in_flight > 1,
        ),
        num_gpus=gpus_per_replica,
        num_cpus=cpus_per_replica,
        resources=resources_per_replica or None,
    )
