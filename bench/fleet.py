"""A simulated GPU fleet on real Ray: does the run keep every GPU busy to the end?

    python bench/fleet.py --gpus 32 --jobs 2000 --json --save

``--gpus`` actors each claim one custom ``sim_gpu`` resource (a local Ray started with
``resources={"sim_gpu": GPUS}``) and run ``SimulatedJobRunner``: a job sleeps for the seconds
the cost model gives it on an H100 (bench/sim_engine.py), scaled so that the whole run takes
about ``--target-s`` seconds, then commits its results row. The manifest mixes fast-like
(distilled, 8 steps, no guidance) and pro-like (40 guided steps) rows of 2-20 s at two sizes
each, and goes through ``ltx_ray.run.run`` - the same validation, ordering and Ray Data plan
as a real run.

Reported: ``utilization`` = busy time / (gpus x makespan), ``makespan_ratio`` = makespan /
(total work / gpus), ``tail_s`` = time from the first actor that has nothing left to do to
the end, plus what a perfect list scheduler would get with the same costs (``schedule_model``).
"""

from __future__ import annotations

import heapq
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser, start_ray  # noqa: E402
from bench.sim_engine import h100_seconds  # noqa: E402

PRESETS = {
    # name: (sizes, steps, guidance_scale)
    "fast": ([(768, 512), (1280, 704)], 8, 1.0),
    "pro": ([(768, 512), (1024, 576)], 40, 3.0),
}


def mixed_rows(n: int, seed: int = 0, pro_share: float = 0.5) -> list[dict]:
    """A manifest of fast-like and pro-like t2v rows of 2-20 s (no sim_seconds yet)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        preset = "pro" if rng.random() < pro_share else "fast"
        sizes, steps, guidance = PRESETS[preset]
        width, height = rng.choice(sizes)
        rows.append({
            "job_id": f"{preset}-{i:05d}", "prompt": f"product shot {i}", "width": width, "height": height,
            "seconds": round(rng.uniform(2.0, 20.0), 2), "steps": steps, "guidance_scale": guidance,
        })
    return rows


def with_sim_seconds(rows: list[dict], gpus: int, target_s: float) -> tuple[list[dict], float, list[float]]:
    """Add each row's simulated seconds (H100 cost x one time scale) as row metadata."""
    from ltx_ray.schema.manifest import ManifestRow
    from ltx_ray.schema.profiles import ModelProfile

    h100 = [h100_seconds(ManifestRow.model_validate(r).resolve(ModelProfile())) for r in rows]
    scale = target_s * gpus / sum(h100)
    out = [{**r, "metadata": json.dumps({"sim_seconds": round(s * scale, 6), "h100_s": round(s, 3)})} for r, s in zip(rows, h100)]
    return out, scale, [s * scale for s in h100]


def list_schedule(costs: list[float], gpus: int) -> float:
    """Makespan of greedy list scheduling (each job to the first free GPU) with no overhead."""
    free = [0.0] * gpus
    for cost in costs:
        heapq.heapreplace(free, free[0] + cost)
    return max(free)


def two_in_flight_schedule(costs: list[float], gpus: int) -> float:
    """Makespan when each GPU holds its next job while running one (two tasks in flight).

    Jobs are handed out in order to the GPU with the fewest assigned (Ray Data gives a free
    slot to the least-loaded actor), so the second job of a GPU is committed to it before
    the first ends, even if another GPU frees up sooner. No overhead is modelled.
    """
    queue = list(costs)
    ends = [0.0] * gpus  # when each GPU finishes all it holds
    held = [[] for _ in range(gpus)]  # end times of the jobs a GPU holds
    now = 0.0
    events: list[tuple[float, int]] = []
    for slot in range(2):  # the first two waves go round-robin
        for g in range(gpus):
            if queue:
                ends[g] += queue.pop(0)
                held[g].append(ends[g])
                if slot == 0:
                    heapq.heappush(events, (ends[g], g))
    while events:
        now, g = heapq.heappop(events)
        held[g].pop(0)
        if held[g]:
            heapq.heappush(events, (held[g][0], g))
        if queue:  # the freed slot takes the next job, queued behind what the GPU still holds
            ends[g] = max(ends[g], now) + queue.pop(0)
            held[g].append(ends[g])
            if len(held[g]) == 1:
                heapq.heappush(events, (ends[g], g))
    return max(ends)


def fleet_metrics(rows: list[dict], gpus: int) -> dict:
    """Utilization, makespan ratio and tail from the results rows' start and end times."""
    spans = [(r["metadata"]["sim_start_unix"], r["metadata"]["sim_end_unix"], r["worker"]) for r in rows]
    first = min(s for s, _, _ in spans)
    last = max(e for _, e, _ in spans)
    makespan = last - first
    busy = sum(e - s for s, e, _ in spans)
    by_actor: dict[str, list[tuple[float, float]]] = {}
    for s, e, w in spans:
        by_actor.setdefault(w, []).append((s, e))
    # An actor that never got work was idle from the start.
    last_ends = [max(e for _, e in v) for v in by_actor.values()] + [first] * (gpus - len(by_actor))
    gaps = []
    for v in by_actor.values():
        v.sort()
        gaps += [b[0] - a[1] for a, b in zip(v, v[1:])]
    gaps.sort()
    ideal = busy / gpus
    return {
        "makespan_s": round(makespan, 3),
        "ideal_makespan_s": round(ideal, 3),
        "busy_s": round(busy, 3),
        "utilization": round(busy / (gpus * makespan), 4),
        "makespan_ratio": round(makespan / ideal, 4),
        "tail_s": round(last - min(last_ends), 3),
        "actors_used": len(by_actor),
        "gap_between_jobs_ms": {
            "mean": round(1000 * sum(gaps) / max(1, len(gaps)), 1),
            "p50": round(1000 * gaps[len(gaps) // 2], 1) if gaps else None,
            "p99": round(1000 * gaps[int(len(gaps) * 0.99)], 1) if gaps else None,
        },
        "first_job_start_spread_s": round(
            max(min(s for s, _ in v) for v in by_actor.values()) - first, 3
        ),
    }


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=32)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--target-s", type=float, default=150.0, help="simulated work / gpus, in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-flight", type=int, default=None, help="RunConfig.tasks_in_flight_per_replica (default: auto)")
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = p.parse_args(argv)

    import pyarrow.parquet as pq

    from ltx_ray.batch.run import RunConfig, auto_tasks_in_flight, run
    from ltx_ray.storage.manifest import write_manifest

    rows, scale, sim = with_sim_seconds(mixed_rows(args.jobs, args.seed), args.gpus, args.target_s)
    tmp = Path(args.out or tempfile.mkdtemp(prefix="ltx-ray-fleet-"))
    tmp.mkdir(parents=True, exist_ok=True)
    write_manifest(rows, str(tmp / "fleet.parquet"))
    out = tmp / "out"

    t0 = time.perf_counter()
    # Logical CPUs are scheduling tokens here: the simulated actors sleep.
    owns = start_ray(num_cpus=args.gpus + 4, resources={"sim_gpu": args.gpus})
    ray_start_s = time.perf_counter() - t0
    try:
        summary = run(
            RunConfig(
                manifests=[str(tmp / "fleet.parquet")], out=str(out), replicas=args.gpus,
                runner="bench.sim_engine:SimulatedJobRunner", resources_per_replica={"sim_gpu": 1},
                tasks_in_flight_per_replica=args.in_flight,
            ),
            log=lambda *_: None,
        )
    finally:
        if owns:
            import ray

            ray.shutdown()
    results = pq.read_table(out / "results").to_pylist()
    for r in results:
        r["metadata"] = json.loads(r["metadata"])
    metrics = fleet_metrics(results, args.gpus)
    ordered = sorted(sim, reverse=True)
    shuffled = sim[:]
    random.Random(args.seed).shuffle(shuffled)
    ideal = sum(sim) / args.gpus
    return emit("fleet", {
        "gpus": args.gpus,
        "jobs": args.jobs,
        "tasks_in_flight_per_replica": args.in_flight or auto_tasks_in_flight(args.jobs, args.gpus),
        "succeeded": summary.succeeded,
        **metrics,
        "run_wall_s": summary.wall_s,
        "ray_start_s": round(ray_start_s, 3),
        "time_scale": round(scale, 6),
        "h100_hours": round(sum(sim) / scale / 3600, 2),
        "longest_job_s": round(max(sim), 3),
        "shortest_job_s": round(min(sim), 4),
        "schedule_model": {
            "longest_first_makespan_ratio": round(list_schedule(ordered, args.gpus) / ideal, 4),
            "manifest_order_makespan_ratio": round(list_schedule(shuffled, args.gpus) / ideal, 4),
            "shortest_first_makespan_ratio": round(list_schedule(ordered[::-1], args.gpus) / ideal, 4),
            "longest_first_two_in_flight_makespan_ratio": round(two_in_flight_schedule(ordered, args.gpus) / ideal, 4),
        },
    }, args)


if __name__ == "__main__":
    main()
