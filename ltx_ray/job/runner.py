"""One job, end to end: the single generation path shared by batch runs and the Serve app.

    fetch inputs -> generate (encode prompt, denoise, decode) -> mux mp4 -> [QC, retry with
    a new seed] -> upload -> write sidecar -> commit the results row

A failure at any stage becomes data: a failed results row naming the stage and the cause.
The results row is written last, so it is the commit marker of a job: a job with a
succeeded row has its mp4, thumbnail and sidecar in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx_ray.engine.types import Engine, JobInputs
from ltx_ray.errors import DeviceLost, ReplicaFatal, RowError, out_of_memory, replica_fatal
from ltx_ray.job import record
from ltx_ray.job.inputs import fetch_inputs, resolve_from_inputs
from ltx_ray.job.qc import QCReport, check_video
from ltx_ray.schema.fields import stable_seed
from ltx_ray.schema.job import Job
from ltx_ray.schema.model import ResolvedModel
from ltx_ray.schema.parallel import Parallel
from ltx_ray.schema.results import ResultRow, hash_recipe, recipe
from ltx_ray.storage.mux import MuxInfo, preview_webp, thumbnail_jpeg, write_mp4
from ltx_ray.storage.results import write_result
from ltx_ray.storage.store import OutputStore


@dataclass
class Take:
    """One attempt's video, muxed and (with QC) checked."""

    job: Job  # the job as tried: its seed is this attempt's
    mp4: bytes
    thumbnail: bytes
    preview: bytes
    info: MuxInfo
    generation: dict  # how the engine made it (stages, tiles, segments)
    report: QCReport | None = None
    sha256: str = field(init=False)  # of the mp4, recorded in the sidecar and the results row

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.mp4).hexdigest()

    @property
    def accepted(self) -> bool:
        return self.report is None or self.report.passed


class JobRunner:
    """Runs jobs on one loaded engine and writes their outputs to one store."""

    def __init__(
        self,
        engine: Engine,
        store: OutputStore,
        model: ResolvedModel,
        *,
        device: str,
        dtype: str,
        run_id: str,
        node_id: str | None = None,
        parallel: Parallel = Parallel(),
        pool: str | None = None,
    ):
        self.engine = engine
        self.store = store
        self.model = model
        self.device = device
        self.dtype = dtype
        self.run_id = run_id
        self.versions = record.package_versions()
        self.node_id = node_id
        self.parallel = parallel  # the replica's ranks (its sidecars' generation.parallel)
        self.pool = pool  # the --pool whose replica this is (its rows' pool)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        # One job at a time on the engine. With two jobs in flight on a replica
        # (RunConfig.tasks_in_flight_per_replica=2) the next job fetches its inputs and
        # then waits here while this one muxes and uploads, so the GPU never waits on them.
        self._engine_lock = threading.Lock()
        self.dispatches = record.Dispatches(store, run_id)

    def run(self, job: Job, on_step: Callable[[int, int], None] | None = None) -> ResultRow:
        """Generate one job and commit its outputs; never raises for a row-level failure.

        Raises ``ReplicaFatal`` (writing no row) when the replica, not the job, is broken: its
        GPU is lost, or out of memory even after freeing it. The caller ends the replica and
        the job goes to another one; after ``MAX_DISPATCH_ATTEMPTS`` it fails as a row.
        """
        ledger = record.Ledger()
        base = self._row_base(job)
        base["dispatch_attempts"], last_fault = self.dispatches.begin(job.job_id)
        try:
            if base["dispatch_attempts"] > record.MAX_DISPATCH_ATTEMPTS:
                ledger.stage = "generate"
                raise RowError(f"{base['dispatch_attempts'] - 1} replicas failed while generating this job (last: "
                               f"{last_fault}); not handed to another: check its size against the GPUs, or rerun")
            # 1. Fetch the inputs; an a2v job without a length takes the given audio's, a retake its source's size.
            with ledger.timed("fetch_inputs"):
                inputs = fetch_inputs(job)
                job = resolve_from_inputs(job, inputs)
            # 2. Generate, mux and check; a video failing QC is made again with a new seed.
            take = self._make_video(job, inputs, ledger, on_step)
            qc = ledger.qc(job, passed=take.accepted)
            # 3. Upload it; a rejected video is kept for review, away from the accepted ones.
            with ledger.timed("upload"):
                uris = self._upload(take)
            # 4. Write the sidecar: how the video was made.
            with ledger.timed("write_metadata"):
                sidecar = record.sidecar(job, take, uris, self, ledger, qc)
                sidecar_uri = self.store.put(f"{job.job_id}.json", json.dumps(sidecar, indent=2).encode())
            row = record.finished_row(base, take, uris, sidecar_uri, ledger, qc)
        except Exception as exc:  # noqa: BLE001 - a row error becomes data; the run goes on
            if replica_fatal(exc):
                self.dispatches.fault(job.job_id, f"{type(exc).__name__}: {exc}")
                raise ReplicaFatal(f"job {job.job_id!r}, {ledger.stage}: {type(exc).__name__}: {exc}") from exc
            message = str(exc) if isinstance(exc, RowError) else f"{type(exc).__name__}: {exc}"
            row = record.failed_row(base, message, job, ledger)
        # 5. Commit the results row, last: the job's commit marker.
        write_result(self.store, job.job_id, row)
        return row

    def _make_video(self, job: Job, inputs: JobInputs, ledger: record.Ledger, on_step) -> Take:
        """The first attempt that passes QC (without QC, the first), else the last one."""
        for seed in attempt_seeds(job):
            take = self._attempt(job if seed == job.seed else job.model_copy(update={"seed": seed}), inputs, ledger, on_step)
            if take.accepted:
                break
        return take

    def _attempt(self, job: Job, inputs: JobInputs, ledger: record.Ledger, on_step) -> Take:
        with self._engine_lock, ledger.timed("generate"):
            clip = self._generate(job, inputs, on_step)
        ledger.add("encode_prompt", clip.info.pop("encode_prompt_s", 0.0))  # part of generate: 0 on a cache hit
        with tempfile.TemporaryDirectory(prefix="ltx-ray-") as tmp:
            local = Path(tmp) / f"{job.job_id}.mp4"
            with ledger.timed("mux"):
                info = write_mp4(local, clip.frames, clip.fps, clip.audio, clip.sample_rate, metadata=self._tags(job))
                thumbnail, preview = thumbnail_jpeg(clip.frames), preview_webp(clip.frames)
            generation = clip.info
            del clip  # the frames go before QC decodes the mp4 again
            take = Take(job, local.read_bytes(), thumbnail, preview, info, generation)
            if job.qc is not None:
                with ledger.timed("qc"):
                    take.report = check_video(local, job.qc, qc_references(job, inputs), expect_audio=job.audio)
                ledger.attempts.append({"attempt": len(ledger.attempts) + 1, "seed": job.seed, **take.report.to_json_dict()})
        return take

    def _generate(self, job: Job, inputs: JobInputs, on_step):
        """The engine's clip; out of GPU memory, it frees what it holds and tries once more, and
        out of memory again is the replica's fault (a fresh process starts with clean memory)."""
        try:
            return self.engine.generate(job, inputs, on_step)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
            if not out_of_memory(exc):
                raise
        free = getattr(self.engine, "free", None)
        if free is not None:
            free()
        try:
            return self.engine.generate(job, inputs, on_step)
        except Exception as exc:  # noqa: BLE001
            if out_of_memory(exc):
                raise DeviceLost(f"out of GPU memory again after freeing it: {exc}") from exc
            raise

    def _upload(self, take: Take) -> dict[str, str]:
        name = ("" if take.accepted else "rejected/") + take.job.job_id
        return {
            "video_uri": self.store.put(f"{name}.mp4", take.mp4),
            "thumbnail_uri": self.store.put(f"{name}.jpg", take.thumbnail),
            "preview_uri": self.store.put(f"{name}.webp", take.preview),
        }

    def _row_base(self, job: Job) -> dict[str, Any]:
        """The columns every row of this job has, whatever happens to it."""
        spec = recipe(job, self.model)
        return dict(
            job_id=job.job_id, task=job.task, seed=job.seed, model=self.model.model_id, metadata=job.metadata,
            passthrough=job.passthrough, job_hash=hash_recipe(spec), recipe=json.dumps(spec, sort_keys=True),
            run_id=self.run_id, node_id=self.node_id, worker=self.worker, pool=self.pool,
        )

    def _tags(self, job: Job) -> dict[str, str]:
        return {
            "comment": f"AI-generated video (ltx-ray, model {self.model.model_id}, job {job.job_id})",
            "ai_generated": "true",
            "ltx_ray_model": self.model.model_id,
            "ltx_ray_job_id": job.job_id,
        }


def end_replica(exc: ReplicaFatal) -> None:
    """End this replica's process: Ray starts a new one (Ray Data's actor pool, a Serve
    deployment) and hands the job it held to a healthy replica. A process whose CUDA context
    failed cannot be repaired from inside, and raising would fail the run or the request."""
    import sys

    print(f"ltx-ray: replica ends: {exc}", file=sys.stderr, flush=True)
    os._exit(70)  # EX_SOFTWARE


def attempt_seeds(job: Job) -> list[int]:
    """The seed of every attempt: the job's own first, then new ones derived from it (reproducible)."""
    count = job.qc.max_attempts if job.qc is not None else 1
    return [job.seed] + [stable_seed(f"{job.job_id}:{job.seed}:{n}") for n in range(2, count + 1)]


def qc_references(job: Job, inputs: JobInputs) -> list[tuple]:
    """(image, output frame) pairs a video must show: i2v's first frame, each keyframe's frame, or
    the source frames a retake keeps next to its span."""
    if job.task == "i2v" and inputs.image is not None:
        return [(inputs.image, 0)]
    if job.task == "retake":  # the source's frames on either side of the span must be there unchanged
        first, end = job.retake.frames(job.num_frames, job.fps)
        return [(inputs.video[frame], frame) for frame in (first - 1, end) if 0 <= frame < job.num_frames]
    return [(image, job.landed_frame(frame)) for image, frame, _ in inputs.keyframes or []]
