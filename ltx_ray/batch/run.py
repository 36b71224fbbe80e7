"""A manifest run, in order: the one function to read to know what ``ltx-ray run`` does."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator

from ltx_ray.batch.pool import Pool, Replicas, check_pools, route
from ltx_ray.batch.progress import Progress
from ltx_ray.engine.weights import check_companions, resolve_model
from ltx_ray.errors import PrecisionError, ReplicaStartFailed
from ltx_ray.job.build import ATTENTION_HELP, Attention, check_attention, check_levers
from ltx_ray.job.record import new_run_id, now
from ltx_ray.products.report import write_report
from ltx_ray.schema.levers import LeverFlags
from ltx_ray.schema.parallel import PARALLEL_HELP, Parallel, ParallelMode
from ltx_ray.schema.profiles import default_dtype, precision_problem
from ltx_ray.schema.job import Job
from ltx_ray.schema.results import ResultRow, job_hash, recipe, recipe_changes
from ltx_ray.storage.manifest import InvalidRow, load_and_validate
from ltx_ray.storage.results import read_results, write_result
from ltx_ray.storage.store import OutputStore


class RunConfig(LeverFlags):
    """Everything a run needs; the CLI and recipes build one of these (the speed levers' settings included)."""

    manifests: list[str] = Field(min_length=1, description="Parquet manifests: files, folders, globs or URIs")
    out: str = Field(description="output folder or URI (s3://, gs://, ...)")
    model: str = Field(default="tiny", description="'tiny' (default, random weights), a local folder, a URI or a hub id")
    device: str = Field(default="cpu", description="torch device of each replica (cpu, cuda)")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="weights and compute dtype (default: bfloat16 on cuda, float32 on cpu)"
    )
    profile: str | None = Field(default=None, description="the model's generation profile (default: detected from its configs)")
    upsampler: str | None = Field(default=None, description="x2 latent upsampler folder (local or URI) for two-stage jobs, "
                                  "instead of the model's latent_upsampler/")
    distilled_lora: str | None = Field(default=None, description="stage-2 distilled LoRA file (local or URI) for two-stage "
                                       "jobs on a dev model, instead of the profile's file at the model's root")
    enhancer: str | None = Field(default=None, description="prompt enhancer folder (local or URI) for enhance_prompt rows: "
                                 "a Gemma 3 processor (LTX-2.0 / 2.3), google/gemma-4-E2B-it (LTX-2.5)")
    address: str | None = Field(default=None, description="Ray cluster address (default: start a local Ray)")
    replicas: Replicas = Field(
        default=Replicas(min=1, max=1),
        description="Generation actors: N, a fixed pool started all at once; or MIN:MAX, an autoscaling pool that starts "
        "MIN and adds actors while every one is busy and jobs wait, as far as the cluster has room (nodes that join), up "
        "to MAX, and lets idle ones go when the jobs run out",
    )
    gpus_per_replica: float = Field(default=0, ge=0, description="GPUs each replica owns: its components are placed "
                                    "over them, or with --parallel each runs one rank of the replica")
    cpus_per_replica: float = Field(default=1, gt=0, description="CPUs each replica reserves in Ray's scheduler")
    parallel: ParallelMode = Field(default="none", description=f"With --gpus-per-replica N, {PARALLEL_HELP}: a replica "
                                   "is N ranks, one per GPU (with --device cpu, N CPU ranks claiming no GPU). A latency "
                                   "tool: every rank holds the whole model")
    pool: list[Pool] = Field(
        default_factory=list,
        description="One pool of replicas (repeat for each), rows routed to them by size, as "
        "NAME:replicas=N,gpus=G,parallel=MODE,min_pixels=WxHxF (e.g. small:replicas=4,gpus=1 and "
        "big:gpus=4,parallel=ulysses,min_pixels=1920x1088x121): a row goes to the "
        "pool with the largest min_pixels at or under its width x height x frames. Replaces --replicas, "
        "--gpus-per-replica and --parallel",
    )
    attention: Attention = Field(default="native", description=ATTENTION_HELP)
    offload: Literal["auto", "none", "model", "group"] = Field(
        default="auto", description="none: the model must fit the replica's GPUs; model / group: CPU offloading for "
        "small cards; auto: as needed"
    )
    force: bool = Field(default=False, description="regenerate jobs that already succeeded")
    run_id: str | None = Field(default=None, description="names the run (_runs/<run_id>/); default UTC time + random suffix")
    no_progress_timeout_s: float = Field(default=3 * 3600, description="fail a run that finishes no job for this long")
    engine: str = Field(default="ltx2", description="'ltx2' or 'module:callable' of a stand-in engine (benchmarks)")
    gpu_hour_usd: float | None = Field(default=None, ge=0, description="price of a GPU-hour, for the cost in the run report")
    runner: str | None = Field(default=None, description="'module:callable' of a stand-in job runner (scheduling benchmarks)")
    tasks_in_flight_per_replica: int | None = Field(
        default=None, ge=1, le=4,
        description="Jobs handed to a replica at once. 1 never commits a job to a busy replica; 2 overlaps "
        "one job's mux and upload with the next one's denoising and hides Ray Data's dispatch gap. "
        "None: 2 when there are at least 16 jobs per replica, else 1 (see bench/fleet.py)",
    )
    resources_per_replica: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each replica claims, e.g. {'sim_gpu': 1} or an accelerator label"
    )

    @model_validator(mode="after")
    def _layout(self):
        if self.pool:
            check_pools(self.pool)
            if self.replicas != Replicas(min=1, max=1) or self.gpus_per_replica or self.parallel != "none":
                raise ValueError("--pool gives each pool its replicas, gpus and parallel: leave --replicas, "
                                 "--gpus-per-replica and --parallel off")
        elif self.parallel != "none":
            if self.gpus_per_replica < 2 or not float(self.gpus_per_replica).is_integer():
                raise ValueError(f"--parallel {self.parallel} runs one rank per GPU of a replica: give "
                                 "--gpus-per-replica N, a whole N >= 2 (with --device cpu: N CPU ranks)")
            Parallel(mode=self.parallel, ranks=int(self.gpus_per_replica))  # cfg-ulysses: an even count
        return self

    def pool_list(self) -> list[Pool]:
        """The run's pools: its --pool flags (a pool without gpus gets 1 on cuda, 0 on cpu), else one
        pool of --replicas replicas of --gpus-per-replica GPUs."""
        if not self.pool:
            return [Pool(name="default", replicas=self.replicas, gpus=self.gpus_per_replica, cpus=self.cpus_per_replica,
                         parallel=self.parallel)]
        fallback = 1.0 if self.device.startswith("cuda") else 0.0
        return [p if p.gpus is not None else p.model_copy(update={"gpus": fallback}) for p in self.pool]


class RunSummary(BaseModel):
    run_id: str
    out: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    invalid: int
    wall_s: float
    video_seconds: float
    gpu_seconds: float = 0.0
    replica_seconds: float = 0.0
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    recipe_changes: dict[str, list[str]] = Field(
        default_factory=dict, description="job_id -> what changed since it last succeeded here (why it is generated again)"
    )
    report_uri: str | None = Field(default=None, description="The run's review page, _runs/{run_id}/report.html")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.invalid else 0


def run(config: RunConfig, log=print) -> RunSummary:
    """Validate everything, then generate what is left, then summarise."""
    started = time.perf_counter()
    run_id = config.run_id or new_run_id()

    # 1. Fatal checks first, before any model loads or GPU starts.
    store = OutputStore(config.out)
    store.check_writable()
    model = resolve_model(config.model, config.profile, upsampler=config.upsampler, distilled_lora=config.distilled_lora,
                          enhancer=config.enhancer)
    config = config.model_copy(update={"dtype": config.dtype or default_dtype(config.device)})
    check_attention(config.attention, config.device)
    check_levers(config.levers(model.profile.levers), config.device, config.dtype)
    if problem := precision_problem(config.dtype, model.profile):
        raise PrecisionError(problem)
    if config.model == "tiny":
        log("note: using the embedded tiny LTX-2 (random weights): the videos are noise. Pass --model for real weights.")

    # 2. Read and validate every manifest row; invalid rows get their failed results rows now.
    manifest = load_and_validate(config.manifests, model.profile, enhancer=model.enhancer is not None)
    check_companions(model, manifest.jobs)
    for row in manifest.invalid:
        write_result(store, row.key, _invalid_result(row, run_id))
        for problem in row.problems:
            log(f"invalid: {problem}")

    # 3. Resume: skip jobs whose identical recipe already succeeded here; say what changed for the others.
    pending, changes = (manifest.jobs, {}) if config.force else _not_yet_done(store, manifest.jobs, model)
    skipped = len(manifest.jobs) - len(pending)
    for job_id, lines in changes.items():
        log(f"regenerating {job_id}, finished before with another recipe: {'; '.join(lines)}")
    log(f"run {run_id}: {len(manifest.jobs) + len(manifest.invalid)} rows, {len(pending)} to generate, "
        f"{skipped} already done, {len(manifest.invalid)} invalid")

    # 4. Generate on Ray: longest jobs first so no replica finishes the run alone; each job on its pool.
    pools = config.pool_list()
    gpus = {p.name if config.pool else None: p.claimed_gpus(config.device) for p in pools}
    progress = Progress(len(pending), sum(p.replicas.max for p in pools), gpus, log)
    if pending:
        # The key counts guidance passes too: a guided 40-step job costs 15x a distilled 8-step
        # one of the same size, not 5x, and a misordered long job ends the run alone.
        pending = sorted(pending, key=lambda j: j.denoise_cost, reverse=True)
        routes = [route(pools, j.width, j.height, j.num_frames).name for j in pending]
        jobs_uri, fs = _write_jobs_file(store, run_id, pending, routes)
        seen: set[str] = set()
        for row in _generate_on_ray(config, pools, run_id, jobs_uri, fs, routes, len(manifest.invalid), log):
            if row["job_id"] in seen:  # a block Ray Data ran again after losing a replica: counted once
                continue
            row["timings"] = json.loads(row["timings"]) if row["timings"] else {}
            seen.add(row["job_id"])
            progress.job_done(row)
        missing = {j.job_id for j in pending} - seen
        if missing:
            raise RuntimeError(f"the run lost {len(missing)} jobs without a result: {sorted(missing)[:5]}")

    # 5. Summarise.
    totals = progress.totals
    summary = RunSummary(
        run_id=run_id,
        out=store.root_uri,
        total=len(manifest.jobs) + len(manifest.invalid),
        succeeded=totals.succeeded,
        failed=totals.failed,
        skipped=skipped,
        invalid=len(manifest.invalid),
        wall_s=round(time.perf_counter() - started, 3),
        video_seconds=round(totals.video_seconds, 3),
        gpu_seconds=round(totals.gpu_seconds, 3),
        replica_seconds=round(totals.replica_seconds, 3),
        stage_seconds=totals.stage_seconds,
        recipe_changes=changes,
    )
    summary.report_uri = write_report(
        store, run_id, job_ids={j.job_id for j in manifest.jobs} | {r.key for r in manifest.invalid},
        gpus_per_job=gpus if config.pool else gpus[None], gpu_hour_usd=config.gpu_hour_usd, summary=summary.model_dump(),
    )
    store.put(f"_runs/{run_id}/summary.json", summary.model_dump_json(indent=2).encode())
    log(f"done: {summary.succeeded} succeeded, {summary.failed} failed, {summary.invalid} invalid, "
        f"{summary.skipped} skipped in {summary.wall_s:.1f} s; {summary.video_seconds:.1f} s of video, "
        f"{summary.gpu_seconds:.1f} GPU-s, stage seconds {summary.stage_seconds}; results in {store.uri('results')}; "
        f"report: {summary.report_uri}")
    return summary


def cpu_threads(replicas: int) -> int:
    """Torch threads of one CPU replica: its share of the cores, at most ``OMP_NUM_THREADS`` if set."""
    share = max(1, (os.cpu_count() or 1) // replicas)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


def auto_tasks_in_flight(num_jobs: int, replicas: int) -> int:
    """Two jobs in flight per replica only where it cannot hurt the schedule.

    A second job is committed to a replica before its first ends. With few jobs per replica
    that can leave a long job queued while other replicas idle (a list-scheduling model of
    the fleet bench's mixed manifest: +10-47% makespan at 2-4 jobs per GPU, +0.6% at 8,
    +0.2% at 16); with many it only removes the gap between jobs and overlaps mux/upload.
    """
    return 2 if num_jobs >= 16 * replicas else 1


def _invalid_result(row: InvalidRow, run_id: str) -> ResultRow:
    problems = "; ".join(f"{p.field} = {p.value}: {p.message}" for p in row.problems)
    metadata = {}
    if row.metadata:
        try:
            parsed = json.loads(row.metadata)
            metadata = parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            pass  # already reported as a problem of the row
    return ResultRow(
        job_id=row.job_id, status="failed", error=problems, error_stage="validate", metadata=metadata,
        run_id=run_id, finished_at=now(),
    )


def _not_yet_done(store: OutputStore, jobs, model) -> tuple[list, dict[str, list[str]]]:
    """The jobs to generate, and for each one that succeeded before with another recipe, what changed."""
    finished = {
        r["job_id"]: r
        for r in read_results(store).select(["job_id", "status", "job_hash", "recipe"]).to_pylist()
        if r["status"] == "succeeded"
    }
    pending, changes = [], {}
    for job in jobs:
        before = finished.get(job.job_id)
        if before is not None and before["job_hash"] == job_hash(job, model):
            continue
        pending.append(job)
        if before is not None:
            changes[job.job_id] = recipe_changes(before["recipe"], recipe(job, model), Job)
    return pending, changes


def _write_jobs_file(store: OutputStore, run_id: str, jobs, pools: list[str]) -> tuple[str, object]:
    """The resolved jobs of this run and the pool of each, for Ray Data to read (and for people to audit)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    table = pa.table({"job_id": [j.job_id for j in jobs], "job": [j.model_dump_json() for j in jobs], "pool": pools})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    name = f"_runs/{run_id}/jobs.parquet"
    store.put(name, sink.getvalue().to_pybytes())
    if store.is_local:
        return store.path(name), None
    return store.path(name), PyFileSystem(FSSpecHandler(store.fs))


def _generate_on_ray(config: RunConfig, pools: list[Pool], run_id: str, jobs_uri: str, filesystem, routes: list[str],
                     invalid: int, log):
    import ray
    from ray.data import DataContext

    from ltx_ray.batch.metrics import JobMetrics
    from ltx_ray.batch.stage import build_dataset, configure_data_context
    from ltx_ray.job.build import RunnerSpec

    owns_ray = not ray.is_initialized()
    if owns_ray:
        # No --address means a fresh local Ray, even when `ray start` left a cluster here.
        ray.init(address=config.address or "local", include_dashboard=False)
    try:
        # The actors count the jobs they run; rows that failed validation never reach one.
        JobMetrics().invalid_rows(invalid)
        configure_data_context(config.no_progress_timeout_s)
        DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
        worker = RunnerSpec(
            model=config.model, out=config.out, device=config.device, dtype=config.dtype, run_id=run_id, profile=config.profile,
            upsampler=config.upsampler, distilled_lora=config.distilled_lora, enhancer=config.enhancer,
            engine=config.engine, runner=config.runner,
            offload=config.offload, attention=config.attention, **config.lever_flags(),
            # On CPU a replica's torch may use its share of the node's cores, not just the
            # one CPU it reserves for Ray's scheduler (OMP_NUM_THREADS, when set, is the cap);
            # every rank of a replica is a process of its own.
            torch_threads=cpu_threads(sum(p.replicas.max * p.layout.ranks for p in pools)) if config.device == "cpu" else None,
        )
        # One map_batches per pool, over that pool's rows; their result rows are one stream.
        plans = []
        for pool in pools:
            count = routes.count(pool.name)
            if not count:
                continue  # no replica starts for a pool no row needs
            # An autoscaling pool is sized by its MAX here: the fewest jobs per replica it may reach.
            in_flight = config.tasks_in_flight_per_replica or auto_tasks_in_flight(count, pool.replicas.max)
            log(f"generating on {pool.describe(named=bool(config.pool))}: {count} job(s), {in_flight} in flight on each")
            plans.append(build_dataset(
                jobs_uri, filesystem, count, worker.model_copy(update={"parallel": pool.layout,
                                                                       "pool": pool.name if config.pool else None}),
                replicas=pool.replicas, gpus_per_replica=pool.claimed_gpus(config.device),
                cpus_per_replica=pool.cpus or config.cpus_per_replica, resources_per_replica=config.resources_per_replica,
                tasks_in_flight=in_flight, pool=pool.name if len(pools) > 1 else None,
            ))
        ds = plans[0].union(*plans[1:]) if len(plans) > 1 else plans[0]
        try:
            yield from ds.iter_rows()
        except ray.exceptions.RayActorError as exc:
            if "creation task" not in str(exc):
                raise
            # No replica could start (Ray Data gave up after max_consecutive_actor_init_deaths):
            # the weights or their placement fail on every node. Fatal for the run, and no
            # failed row per job: nothing was tried. Jobs finished before stay committed.
            cause = str(exc).strip().splitlines()[-1]  # the constructor's exception, "module.Type: message"
            named = re.match(r"^([\w.]+): (.*)$", cause)
            if named:
                cause = f"{named[1].rsplit('.', 1)[-1]}: {named[2]}"
            raise ReplicaStartFailed(f"no replica could start (Ray gave up after its retries): {cause}") from None
    finally:
        if owns_ray:
            ray.shutdown()
