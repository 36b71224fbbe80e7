"""Stand-ins for the GPU, named as such, for benchmarks that measure ltx-ray rather than a model.

- ``h100_seconds``: the cost model, seconds one H100 would spend on a job.
- ``SimulatedJobRunner``: "generates" by sleeping ``job.metadata["sim_seconds"]`` and commits a
  results row (with its start and end times) - the fleet and scale benchmarks.
- ``NullJobRunner``: commits a results row and nothing else - orchestration capacity.
- ``NullEngine``: the ``LTX2Engine`` interface returning a black clip at once, so the real
  ``JobRunner`` (mux, thumbnail, upload, sidecar, results row) runs with free generation.

The runners plug in through ``WorkerConfig.runner`` and the engine through ``WorkerConfig.engine``;
the Ray Data plan of the run is the real one either way.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime, timezone

from ltx_ray.schema.job import Job

# Calibration: SGLang on one H100 generates LTX-2 768x512x121 (6,144 video tokens) with
# 8 distilled steps (1 pass each) in 9.5 s bf16 (docs/benchmarks.md, published speeds). The cost is linear in
# tokens x steps x passes (Job.denoise_cost); attention makes long clips a little dearer still.
H100_REFERENCE_COST = 6144 * 8 * 1
H100_REFERENCE_SECONDS = 9.5


def h100_seconds(job: Job) -> float:
    """Seconds one H100 would spend generating ``job`` (bf16, one stage)."""
    return H100_REFERENCE_SECONDS * job.denoise_cost / H100_REFERENCE_COST


class SimulatedJobRunner:
    """A job runner whose GPU work is a sleep; commits a results row like the real one."""

    sleeps = True

    def __init__(self, config, node_id: str | None = None):
        from ltx_ray.engine.weights import resolve_model
        from ltx_ray.storage.store import OutputStore

        self.store = OutputStore(config.out)
        self.model = resolve_model(config.model)
        self.run_id = config.run_id
        self.node_id = node_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        # One simulated GPU: with two jobs in flight, the second waits like JobRunner's does.
        self._gpu = threading.Lock()

    def run(self, job: Job, on_step=None):
        from ltx_ray.schema.results import ResultRow, job_hash
        from ltx_ray.storage.results import write_result

        with self._gpu:
            start = time.time()
            if self.sleeps:
                time.sleep(float(job.metadata.get("sim_seconds", 0.0)))
            end = time.time()
        row = ResultRow(
            job_id=job.job_id,
            status="succeeded",
            task=job.task,
            seed=job.seed,
            model=self.model.model_id,
            width=job.width,
            height=job.height,
            num_frames=job.num_frames,
            fps=job.fps,
            duration_s=job.duration_s,
            # The busy interval goes in the metadata column: timings hold stage seconds only
            # (the run sums them), not wall-clock times.
            metadata={**job.metadata, "sim_start_unix": start, "sim_end_unix": end},
            passthrough=job.passthrough,
            job_hash=job_hash(job, self.model),
            run_id=self.run_id,
            node_id=self.node_id,
            worker=self.worker,
            timings={"generate": round(end - start, 6)},
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        write_result(self.store, job.job_id, row)
        return row


class NullJobRunner(SimulatedJobRunner):
    """Free work: only the results row is written (the orchestration, nothing else)."""

    sleeps = False


class NullEngine:
    """The ``LTX2Engine`` interface with free generation: a black clip (and silent audio) at once."""

    audio_sample_rate = 24000
    placement = None  # nothing is placed: no model

    def __init__(self, model=None, device: str = "cpu", dtype: str = "float32"):
        self.device = device

    def generate(self, job: Job, inputs, on_step=None):
        import numpy as np

        from ltx_ray.engine.types import Clip

        frames = np.zeros((job.num_frames, job.height, job.width, 3), dtype=np.uint8)
        audio = None
        if job.audio:
            audio = np.zeros((2, round(job.duration_s * self.audio_sample_rate)), dtype=np.float32)
        return Clip(frames=frames, fps=job.fps, audio=audio, sample_rate=self.audio_sample_rate if job.audio else None)
