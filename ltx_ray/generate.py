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
import platform
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from ltx_ray.inputs import InputError, fetch_inputs, resolve_length
from ltx_ray.ltx2 import JobInputs, LTX2Engine, keyframe_effective_frame
from ltx_ray.model_source import ResolvedModel
from ltx_ray.mux import preview_webp, thumbnail_jpeg, write_mp4
from ltx_ray.qc import check_video
from ltx_ray.results import ResultRow, job_hash, write_result
from ltx_ray.schema import Job, stable_seed
from ltx_ray.storage import OutputStore

PACKAGES = ("ltx-ray", "torch", "diffusers", "transformers", "ray", "av", "pyarrow", "pydantic")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class JobRunner:
    """Runs jobs on one loaded engine and writes their outputs to one store."""

    def __init__(
        self,
        engine: LTX2Engine,
        store: OutputStore,
        model: ResolvedModel,
        *,
        device: str,
        dtype: str,
        run_id: str,
        node_id: str | None = None,
    ):
        self.engine = engine
        self.store = store
        self.model = model
        self.device = device
        self.dtype = dtype
        self.run_id = run_id
        self.versions = package_versions()
        self.node_id = node_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        # One job at a time on the engine. With two jobs in flight on a replica
        # (RunConfig.tasks_in_flight_per_replica=2) the next job fetches its inputs and
        # then waits here while this one muxes and uploads, so the GPU never waits on them.
        self._engine_lock = threading.Lock()

    def run(self, job: Job, on_step: Callable[[int, int], None] | None = None) -> ResultRow:
        """Generate one job and commit its outputs; never raises for a row-level failure."""
        timings: dict[str, float] = {}
        stage = "fetch_inputs"

        @contextmanager
        def timed(name: str):
            nonlocal stage
            stage = name
            start = time.perf_counter()
            yield
            # Attempts add up: the timings are what the job really cost its worker.
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 4)

        base = dict(
            job_id=job.job_id,
            task=job.task,
            seed=job.seed,
            model=self.model.model_id,
            metadata=job.metadata,
            passthrough=job.passthrough,
            job_hash=job_hash(job, self.model),
            run_id=self.run_id,
            node_id=self.node_id,
            worker=self.worker,
        )
        attempts: list[dict] = []
        try:
            with timed("fetch_inputs"):
                inputs = fetch_inputs(job)
                job = resolve_length(job, inputs)  # a2v: the given audio's length sets num_frames
            # Quality gate: without job.qc this loop runs once and checks nothing; with it, a
            # video failing a check is made again with a new seed, up to qc.max_attempts.
            for attempt, seed in enumerate(attempt_seeds(job), start=1):
                tried = job if seed == job.seed else job.model_copy(update={"seed": seed})
                with self._engine_lock, timed("generate"):
                    clip = self.engine.generate(tried, inputs, on_step)
                with tempfile.TemporaryDirectory(prefix="ltx-ray-") as tmp:
                    local = Path(tmp) / f"{job.job_id}.mp4"
                    with timed("mux"):
                        info = write_mp4(local, clip.frames, clip.fps, clip.audio, clip.sample_rate, metadata=self._tags(job))
                        thumb, preview = thumbnail_jpeg(clip.frames), preview_webp(clip.frames)
                    generation = clip.info
                    del clip
                    mp4 = local.read_bytes()
                    report = None
                    if job.qc is not None:
                        with timed("qc"):
                            report = check_video(local, job.qc, qc_references(job, inputs), expect_audio=job.audio)
                        attempts.append({"attempt": attempt, "seed": seed, **report.to_json_dict()})
                if report is None or report.passed:
                    break
            qc = {"passed": report.passed, "config": job.qc.model_dump(), "attempts": attempts} if report else None
            # A video that failed QC is kept for review, away from the accepted outputs.
            prefix = "" if report is None or report.passed else "rejected/"
            with timed("upload"):
                video_uri = self.store.put(f"{prefix}{job.job_id}.mp4", mp4)
                thumb_uri = self.store.put(f"{prefix}{job.job_id}.jpg", thumb)
                preview_uri = self.store.put(f"{prefix}{job.job_id}.webp", preview)
            digest = hashlib.sha256(mp4).hexdigest()
            sidecar = {
                "job": tried.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "dtype": self.dtype,
                "device": self.device,
                "placement": self.engine.placement.model_dump() if self.engine.placement is not None else None,
                "outputs": {"video_uri": video_uri, "thumbnail_uri": thumb_uri, "preview_uri": preview_uri,
                            "sha256": digest, "bytes": len(mp4)},
                "video": info.model_dump(),
                "versions": self.versions,
                "keyframes_landed": [
                    {"uri": k.uri, "frame": k.frame, "effective_frame": keyframe_effective_frame(k.frame)}
                    for k in job.keyframes
                ],
                "qc": qc,
                "generation": generation,
                "timings": timings,
                "run_id": self.run_id,
                "finished_at": _now(),
            }
            with timed("write_metadata"):
                sidecar_uri = self.store.put(f"{job.job_id}.json", json.dumps(sidecar, indent=2).encode())
            outcome = dict(status="succeeded")
            if qc is not None and not qc["passed"]:
                outcome = dict(status="failed", error_stage="qc", error=qc_error(attempts))
            row = ResultRow(
                **{**base, "seed": tried.seed},
                **outcome,
                video_uri=video_uri,
                sidecar_uri=sidecar_uri,
                thumbnail_uri=thumb_uri,
                sha256=digest,
                bytes=len(mp4),
                width=info.width,
                height=info.height,
                num_frames=info.num_frames,
                fps=info.fps,
                duration_s=info.duration_s,
                audio_sample_rate=info.audio_sample_rate,
                timings=timings,
                qc=qc,
                attempts=len(attempts) or 1,
                finished_at=_now(),
            )
        except Exception as exc:  # noqa: BLE001 - a row error becomes data; the run goes on
            message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            qc = {"passed": False, "config": job.qc.model_dump(), "attempts": attempts} if attempts else None
            row = ResultRow(**base, status="failed", error=message[:2000], error_stage=stage, timings=timings,
                            qc=qc, attempts=len(attempts) or None, finished_at=_now())
        write_result(self.store, job.job_id, row)
        return row

    def _tags(self, job: Job) -> dict[str, str]:
        return {
            "comment": f"AI-generated video (ltx-ray, model {self.model.model_id}, job {job.job_id})",
            "ai_generated": "true",
            "ltx_ray_model": self.model.model_id,
            "ltx_ray_job_id": job.job_id,
        }


def attempt_seeds(job: Job) -> list[int]:
    """The seed of every attempt: the job's own first, then new ones derived from it (reproducible)."""
    count = job.qc.max_attempts if job.qc is not None else 1
    return [job.seed] + [stable_seed(f"{job.job_id}:{job.seed}:{n}") for n in range(2, count + 1)]


def qc_references(job: Job, inputs: JobInputs) -> list[tuple]:
    """(image, output frame) pairs a video must show: i2v's first frame, or where each keyframe landed."""
    if job.task == "i2v" and inputs.image is not None:
        return [(inputs.image, 0)]
    return [(image, keyframe_effective_frame(frame)) for image, frame, _ in inputs.keyframes or []]


def qc_error(attempts: list[dict]) -> str:
    """Why the last attempt was rejected, e.g. 'QC failed after 3 attempts (seeds 1, 2, 3): motion 0.01 < 0.3'."""
    last = attempts[-1]["checks"]
    reasons = []
    for name, check in last.items():
        if check["pass"] is False:
            op = "<=" if name == "blank_fraction" else ">="
            reasons.append(f"{name} = {check['score']} (needs {op} {check['threshold']})")
    seeds = ", ".join(str(a["seed"]) for a in attempts)
    return f"QC failed after {len(attempts)} attempt(s) (seeds {seeds}): " + "; ".join(reasons)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
