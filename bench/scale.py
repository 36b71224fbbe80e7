"""A 1,000-row manifest: validation time, driver memory over the run, a finished rerun.

    python bench/scale.py --rows 1000 --json --save

1. ``ltx-ray validate`` on the manifest, as a user runs it (a fresh process).
2. The run, on ``--replicas`` actors running ``SimulatedJobRunner`` (the fleet benchmark's
   mixed manifest and cost model, scaled to about ``--target-s`` of work per actor): the
   driver's RSS is sampled as rows finish; ``driver_rss_growth`` = RSS at the end / RSS once
   the first 10% of rows are done.
3. ``ltx-ray run`` again on the finished output, as a user runs it: it must skip every row.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, emit, parser, start_ray  # noqa: E402
from bench.fleet import mixed_rows, with_sim_seconds  # noqa: E402


def cli(*argv: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ltx_ray.cli", *argv], capture_output=True, text=True, cwd=REPO)
    return time.perf_counter() - start, proc


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--target-s", type=float, default=10.0, help="simulated work per actor, in seconds")
    args = p.parse_args(argv)

    import psutil

    from ltx_ray.batch.run import RunConfig, run
    from ltx_ray.storage.manifest import write_manifest

    tmp = Path(tempfile.mkdtemp(prefix="ltx-ray-scale-"))
    manifest, out = str(tmp / "scale.parquet"), str(tmp / "out")
    rows, _, _ = with_sim_seconds(mixed_rows(args.rows), args.replicas, args.target_s)
    write_manifest(rows, manifest)

    validate_s, proc = cli("validate", manifest)
    if proc.returncode != 0:
        raise SystemExit(f"validate failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    me = psutil.Process()
    rss: list[tuple[int, float]] = []  # (rows done, MiB)
    peak = [0.0]
    done = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], me.memory_info().rss / 2**20)

    def log(line: str) -> None:
        if line.startswith("["):
            done[0] += 1
            if done[0] % max(1, args.rows // 20) == 0 or done[0] == args.rows:
                rss.append((done[0], me.memory_info().rss / 2**20))

    owns = start_ray(num_cpus=args.replicas + 2, resources={"sim_gpu": args.replicas})
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        start = time.perf_counter()
        summary = run(
            RunConfig(
                manifests=[manifest], out=out, replicas=args.replicas,
                runner="bench.sim_engine:SimulatedJobRunner", resources_per_replica={"sim_gpu": 1},
            ),
            log=log,
        )
        run_s = time.perf_counter() - start
    finally:
        stop.set()
        if owns:
            import ray

            ray.shutdown()

    rerun_s, proc = cli("run", manifest, "--out", out)
    rerun_generated = None
    for line in proc.stdout.splitlines():
        if " to generate, " in line:
            rerun_generated = int(line.split(" to generate")[0].rsplit(" ", 1)[1])
    if proc.returncode != 0:
        raise SystemExit(f"rerun failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    tenth = next(mb for n, mb in rss if n >= args.rows // 10)
    return emit("scale", {
        "rows": args.rows,
        "validate_cli_s": round(validate_s, 3),
        "run_s": round(run_s, 3),
        "succeeded": summary.succeeded,
        "driver_rss_mb_at_10pct": round(tenth, 1),
        "driver_rss_mb_at_end": round(rss[-1][1], 1),
        "driver_rss_mb_peak": round(max(peak[0], rss[-1][1]), 1),
        "driver_rss_growth": round(rss[-1][1] / tenth, 4),
        "driver_rss_mb_by_rows_done": [[n, round(mb, 1)] for n, mb in rss],
        "rerun_cli_s": round(rerun_s, 3),
        "rerun_generated": rerun_generated,
    }, args)


if __name__ == "__main__":
    main()
