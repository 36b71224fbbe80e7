"""One job, end to end: the single generation path shared by batch runs and the Serve app.

    fetch inputs -> generate (encode prompt, denoise, decode) -> mux mp4 -> upload
    -> write sidecar -> commit the results row

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

from ltx_ray.inputs import InputError, fetch_inputs
from ltx_ray.ltx2 import LTX2Engine, keyframe_effective_frame
from ltx_ray.model_source import ResolvedModel
from ltx_ray.mux import thumbnail_jpeg, write_mp4
from ltx_ray.results import ResultRow, job_hash, write_result
from ltx_ray.schema import Job
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
            timings[name] = round(time.perf_counter() - start, 4)

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
        try:
            with timed("fetch_inputs"):
                inputs = fetch_inputs(job)
            with self._engine_lock, timed("generate"):
                clip = self.engine.generate(job, inputs, on_step)
            with timed("mux"), tempfile.TemporaryDirectory(prefix="ltx-ray-") as tmp:
                local = Path(tmp) / f"{job.job_id}.mp4"
                info = write_mp4(
                    local,
                    clip.frames,
                    clip.fps,
                    clip.audio,
                    clip.sample_rate,
                    metadata={
                        "comment": f"AI-generated video (ltx-ray, model {self.model.model_id}, job {job.job_id})",
                        "ai_generated": "true",
                        "ltx_ray_model": self.model.model_id,
                        "ltx_ray_job_id": job.job_id,
                    },
                )
                mp4 = local.read_bytes()
                thumb = thumbnail_jpeg(clip.frames)
            del clip
            with timed("upload"):
                video_uri = self.store.put(f"{job.job_id}.mp4", mp4)
                thumb_uri = self.store.put(f"{job.job_id}.jpg", thumb)
            digest = hashlib.sha256(mp4).hexdigest()
            sidecar = {
                "job": job.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "dtype": self.dtype,
                "device": self.device,
                "outputs": {"video_uri": video_uri, "thumbnail_uri": thumb_uri, "sha256": digest, "bytes": len(mp4)},
                "video": info.model_dump(),
                "versions": self.versions,
                "keyframes_landed": [
                    {"uri": k.uri, "frame": k.frame, "effective_frame": keyframe_effective_frame(k.frame)}
                    for k in job.keyframes
                ],
                "timings": timings,
                "run_id": self.run_id,
                "finished_at": _now(),
            }
            with timed("write_metadata"):
                sidecar_uri = self.store.put(f"{job.job_id}.json", json.dumps(sidecar, indent=2).encode())
            row = ResultRow(
                **base,
                status="succeeded",
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
                finished_at=_now(),
            )
        except InputError as exc:
            row = ResultRow(**base, status="failed", error=str(exc), error_stage=stage, timings=timings, finished_at=_now())
        except Exception as exc:  # noqa: BLE001 - a row error becomes data; the run goes on
            message = f"{type(exc).__name__}: {exc}"
            row = ResultRow(**base, status="failed", error=message[:2000], error_stage=stage, timings=timings, finished_at=_now())
        write_result(self.store, job.job_id, row)
        return row


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
