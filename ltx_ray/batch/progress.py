"""Per-job progress lines with an ETA, and the run's totals."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel, Field


class RunTotals(BaseModel):
    """What a run produced and what it cost, summed over the jobs it generated."""

    succeeded: int = 0
    failed: int = 0
    video_seconds: float = 0.0
    gpu_seconds: float = Field(default=0.0, description="generate time x GPUs per replica")
    replica_seconds: float = Field(default=0.0, description="time replicas spent on jobs, all stages")
    stage_seconds: dict[str, float] = Field(default_factory=dict)


class Progress:
    """Counts finished jobs and prints one line per job: done / failed / left and an ETA."""

    def __init__(self, total: int, replicas: int, gpus_per_replica: float | dict[str | None, float],
                 log: Callable[[str], None]):
        """``gpus_per_replica``: one number, or by pool name (``None`` for a run without --pool)."""
        self.total = total
        self.replicas = replicas
        self.gpus_per_replica = gpus_per_replica
        self.log = log
        self.started = time.perf_counter()
        self.totals = RunTotals()
        self._stages: Counter = Counter()

    def job_done(self, row: dict) -> None:
        ok = row["status"] == "succeeded"
        if ok:
            self.totals.succeeded += 1
            self.totals.video_seconds += row.get("duration_s") or 0.0
        else:
            self.totals.failed += 1
        timings = row.get("timings") or {}
        for stage, seconds in timings.items():
            self._stages[stage] += seconds
        self.totals.replica_seconds += sum(timings.values())
        gpus = self.gpus_per_replica
        gpus = gpus.get(row.get("pool"), 0.0) if isinstance(gpus, dict) else gpus
        self.totals.gpu_seconds += (timings.get("generate") or 0.0) * gpus
        self.totals.stage_seconds = {k: round(v, 3) for k, v in self._stages.items()}
        done = self.totals.succeeded + self.totals.failed
        left = self.total - done
        elapsed = time.perf_counter() - self.started
        eta = f"{elapsed / done * left:.0f} s" if done else "?"
        what = f"-> {row['video_uri']}" if ok else f"FAILED at {row['error_stage']}: {row['error']}"
        self.log(
            f"[{done}/{self.total} done, {self.totals.failed} failed, {left} left, eta {eta}] {row['job_id']} {what}"
        )
