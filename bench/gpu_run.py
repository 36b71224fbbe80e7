"""One configuration of ``bench/gpu.py``: a warm-up job, then its clips through ``JobRunner`` with the
stage clock and the memory peaks watching; the numbers summed up as a ``ConfigResult``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.gpu_configs import WARMUP, Config
from bench.gpu_measure import Peaks, StageClock, run_clips
from bench.gpu_report import ConfigResult, not_measured, summarize


def measure(model, config: Config, index: int, scale: str, out: Path, deadline: float | None,
            peak_tflops: float | None) -> tuple[ConfigResult, object | None]:
    """``config`` measured on ``model`` (a ``BenchModel``); with the first clip's job (None if it failed)."""
    lever = config.lever
    compiles = bool(lever and lever.compiles)
    _reset_dynamo(compiles)
    engine = model.engine(config.recipe, dict(lever.engine_kwargs) if lever else {})
    runner = model.runner(engine, out, run_id=f"bench-gpu-{index:02d}")
    clock = StageClock(engine.stages.base, model.torch_device)
    peaks = Peaks(model.torch_device)
    prefix = f"c{index:02d}"
    try:
        # A compiled lever warms up at its own shape (one compilation per shape); others on a small clip.
        warm = config.geometry if compiles else WARMUP[scale].model_copy(update={"two_stage": config.geometry.two_stage})
        start = time.perf_counter()
        row = runner.run(model.job(config, warm, 10_000 + index, f"{prefix}-warmup"))
        warmup_s = time.perf_counter() - start
        if row.status != "succeeded":
            return not_measured(config, "failed", f"warm-up clip: {row.error}"), None
        clock.reset()
        peaks.reset()
        jobs = [model.job(config, config.geometry, 100 * index + i, f"{prefix}-{i}") for i in range(config.clips)]
        rows, wall = run_clips(runner, jobs, config.in_flight, deadline)
        failed = [r for r in rows if r.status != "succeeded"]
        if failed:
            return not_measured(config, "failed", f"{failed[0].job_id} ({failed[0].error_stage}): {failed[0].error}"), None
        flops = clock.flops(model.flops_cache)
        placement = engine.placement
        result = summarize(config, jobs, rows, wall, clock, flops, peaks, peak_tflops, warmup_s=round(warmup_s, 3),
                           placement=f"{placement.offload}: {placement.reason}" if placement else None,
                           dynamo=_dynamo_counts() if compiles else None)
        return result, jobs[0]
    finally:
        clock.close()


def _reset_dynamo(compiles: bool) -> None:
    """One compilation per shape and configuration: dynamo's caches and counters start empty, so a
    configuration never inherits another's graphs or runs into the recompile limit they used up."""
    if not compiles and "torch._dynamo" not in sys.modules:
        return
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()


def _dynamo_counts() -> dict:
    """Whether the compile lever compiled anything, and where it fell back to eager."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "recompiles": int(sum(counters["recompiles"].values()))}
