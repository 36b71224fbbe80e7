"""Orchestration capacity: rows per second a run sustains when generation is free.

    python bench/capacity.py --json --save

The same ``ltx_ray.run.run`` (validate, resume check, jobs file, Ray Data plan) drives
``NullJobRunner`` actors (bench/sim_engine.py): a job only commits its results row, so what is
measured is ltx-ray and Ray Data, per core of the head machine (``rows_per_s_per_core``).
With ``--engine-jobs N`` a second run, side by side, uses ``NullEngine`` behind the real
``JobRunner``: a black 64x64 clip is muxed to mp4, thumbnailed, uploaded with its sidecar
and results row (the per-job work ltx-ray adds around generation).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser, start_ray  # noqa: E402


def timed_run(rows: list[dict], tmp: Path, name: str, **config) -> dict:
    """One run; the steady rate is taken between the first and the last finished row."""
    from ltx_ray.batch.run import RunConfig, run
    from ltx_ray.storage.manifest import write_manifest

    write_manifest(rows, str(tmp / f"{name}.parquet"))
    stamps: list[float] = []

    def log(line: str) -> None:
        if line.startswith("["):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    summary = run(RunConfig(manifests=[str(tmp / f"{name}.parquet")], out=str(tmp / name), **config), log=log)
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {
        "rows": len(rows),
        "succeeded": summary.succeeded,
        "wall_s": round(time.perf_counter() - start, 3),
        "to_first_row_s": round(stamps[0] - start, 3) if stamps else None,
        "rows_per_s": round(steady, 2) if steady else None,
        "rows_per_s_with_startup": round(len(rows) / (time.perf_counter() - start), 2),
    }


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=600)
    p.add_argument("--replicas", type=int, default=8, help="null actors (they cost no GPU)")
    p.add_argument("--in-flight", type=int, default=None, help="RunConfig.tasks_in_flight_per_replica (default: auto)")
    p.add_argument("--engine-jobs", type=int, default=60, help="rows of the NullEngine run (0 skips it)")
    args = p.parse_args(argv)

    from ltx_ray.batch.run import auto_tasks_in_flight

    tmp = Path(tempfile.mkdtemp(prefix="ltx-ray-capacity-"))
    rows = [{"job_id": f"null-{i:05d}", "prompt": f"row {i}", "width": 64, "height": 64, "num_frames": 9} for i in range(args.jobs)]
    owns = start_ray(num_cpus=args.replicas + 2)
    try:
        null_runner = timed_run(
            rows, tmp, "null-runner", replicas=args.replicas, runner="bench.sim_engine:NullJobRunner",
            tasks_in_flight_per_replica=args.in_flight,
        )
        null_engine = None
        if args.engine_jobs:
            null_engine = timed_run(
                rows[: args.engine_jobs], tmp, "null-engine", replicas=2, engine="bench.sim_engine:NullEngine",
                tasks_in_flight_per_replica=args.in_flight,
            )
    finally:
        if owns:
            import ray

            ray.shutdown()
    cores = os.cpu_count() or 1
    return emit("capacity", {
        "head_cores": cores,
        "replicas": args.replicas,
        "tasks_in_flight_per_replica": args.in_flight or auto_tasks_in_flight(args.jobs, args.replicas),
        "rows_per_s": null_runner["rows_per_s"],
        "rows_per_s_per_core": round(null_runner["rows_per_s"] / cores, 2) if null_runner["rows_per_s"] else None,
        "null_runner": null_runner,
        "null_engine_full_jobrunner": null_engine,
    }, args)


if __name__ == "__main__":
    main()
