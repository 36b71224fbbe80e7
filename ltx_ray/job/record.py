"""What a job leaves behind besides its video: the JSON sidecar and the results row.

The sidecar says how the video was made (every resolved parameter, the model, placement,
versions, timings); the results row is the one-line summary the run's table holds, and it
is written last, so it is the job's commit marker.
"""

from __future__ import annotations

import json
import platform
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from typing import Any

from ltx_ray.schema.job import Job
from ltx_ray.schema.results import ResultRow

PACKAGES = ("ltx-ray", "torch", "diffusers", "transformers", "ray", "av", "pyarrow", "pydantic")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_run_id(prefix: str = "") -> str:
    """A sortable, unique run id: UTC time plus a random suffix (``serve-...`` for a Serve app)."""
    return prefix + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Replicas a job may be handed to before it fails as a row: one lost GPU is the replica's
# fault, the same job breaking three of them is the job's (too large for the card, say).
MAX_DISPATCH_ATTEMPTS = 3


class Dispatches:
    """How often this run handed each job to a replica, and what broke the last one:
    ``{out}/_runs/{run_id}/dispatch/{job_id}.json``, so the count survives the replica."""

    def __init__(self, store, run_id: str):
        self.store = store
        self.prefix = f"_runs/{run_id}/dispatch"

    def begin(self, job_id: str) -> tuple[int, str | None]:
        """This dispatch's number (1 the first time) and the fault that ended the previous one."""
        name = f"{self.prefix}/{job_id}.json"
        before = json.loads(self.store.get(name)) if self.store.exists(name) else {"attempt": 0, "fault": None}
        attempt = before["attempt"] + 1
        self.store.put(name, json.dumps({"attempt": attempt, "fault": before["fault"]}).encode())
        return attempt, before["fault"]

    def fault(self, job_id: str, fault: str) -> None:
        name = f"{self.prefix}/{job_id}.json"
        state = json.loads(self.store.get(name))
        self.store.put(name, json.dumps({**state, "fault": fault[:2000]}).encode())


@dataclass
class Ledger:
    """A job's running account: the stage it is in (named on the row if it fails), the time
    each stage took (attempts add up: what the job really cost its worker) and every QC attempt."""

    stage: str = "fetch_inputs"
    timings: dict[str, float] = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)

    @contextmanager
    def timed(self, stage: str):
        self.stage = stage
        start = time.perf_counter()
        yield
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 4)

    def add(self, stage: str, seconds: float) -> None:
        """Time measured inside another stage (the engine's prompt encoding inside generate)."""
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 4)

    def qc(self, job: Job, passed: bool) -> dict | None:
        """The row's and sidecar's ``qc`` column; None when the job has no checks."""
        if job.qc is None or not self.attempts:
            return None
        return {"passed": passed, "config": job.qc.model_dump(), "attempts": self.attempts}


def sidecar(job: Job, take: Any, uris: dict[str, str], runner: Any, ledger: Ledger, qc: dict | None) -> dict:
    """The JSON written beside the mp4. ``take`` is the accepted (or last) attempt."""
    return {
        "job": take.job.model_dump(mode="json"),
        # component_dtypes: read off the loaded modules, not the flag asked for.
        "model": {**runner.model.model_dump(mode="json"),
                  "component_dtypes": getattr(runner.engine, "component_dtypes", None),
                  "attention": getattr(runner.engine, "attention", None),
                  # the speed levers the replica runs with (a profile's, or the run's --compile etc.)
                  "levers": getattr(runner.engine, "levers", None)},
        "dtype": runner.dtype,
        "device": runner.device,
        "placement": runner.engine.placement.model_dump() if runner.engine.placement is not None else None,
        "outputs": {**uris, "sha256": take.sha256, "bytes": len(take.mp4)},
        "video": take.info.model_dump(),
        "versions": runner.versions,
        # keyframe_time "exact": each keyframe's tokens get its own frame's time
        # (engine/conditioning.py), as the official VideoConditionByKeyframeIndex places them.
        "keyframes_landed": [
            {"uri": k.uri, "frame": k.frame, "effective_frame": job.landed_frame(k.frame)} for k in job.keyframes
        ],
        "qc": qc,
        # parallel: the ranks this replica split the clip over (issue 18)
        "generation": {**take.generation, "parallel": runner.parallel.model_dump()},
        "timings": ledger.timings,
        "run_id": runner.run_id,
        "pool": runner.pool,
        "finished_at": now(),
    }


def finished_row(base: dict, take: Any, uris: dict[str, str], sidecar_uri: str, ledger: Ledger, qc: dict | None) -> ResultRow:
    """The row of a job that made a video: succeeded, or failed at QC with the video kept for review."""
    outcome: dict[str, Any] = dict(status="succeeded")
    if qc is not None and not qc["passed"]:
        outcome = dict(status="failed", error_stage="qc", error=qc_error(ledger.attempts))
    info = take.info
    return ResultRow(
        **{**base, "seed": take.job.seed},
        **outcome,
        video_uri=uris["video_uri"],
        sidecar_uri=sidecar_uri,
        thumbnail_uri=uris["thumbnail_uri"],
        sha256=take.sha256,
        bytes=len(take.mp4),
        width=info.width,
        height=info.height,
        num_frames=info.num_frames,
        fps=info.fps,
        duration_s=info.duration_s,
        audio_sample_rate=info.audio_sample_rate,
        timings=ledger.timings,
        qc=qc,
        attempts=len(ledger.attempts) or 1,
        finished_at=now(),
    )


def failed_row(base: dict, message: str, job: Job, ledger: Ledger) -> ResultRow:
    """The row of a job that stopped at ``ledger.stage``."""
    return ResultRow(**base, status="failed", error=message[:2000], error_stage=ledger.stage, timings=ledger.timings,
                     qc=ledger.qc(job, passed=False), attempts=len(ledger.attempts) or None, finished_at=now())


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
