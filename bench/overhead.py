"""What ltx-ray adds per job over a bare diffusers loop, measured side by side.

    python bench/overhead.py --jobs 8 --rounds 2 --json --save

In one process tree, alternating, the same ``--jobs`` text-to-video jobs on the tiny model:
(a) a bare loop: ``LTX2Pipeline.from_pretrained`` once, call it, write the mp4 with diffusers'
``encode_video`` (``diffusers.utils.export_utils`` in 0.42.1); (b) ``ltx_ray.run.run`` with one
replica (validation, Ray Data, mux with sync and tags, thumbnail, sidecar, results row);
(c) the same with two jobs in flight on the replica, so that one job's mux and upload overlap
the next job's denoising. Steady-state seconds per job are taken after the first job of each
run (the bare loop: mean of jobs 2..N; ltx-ray: between the first and the last finished row);
start-up (model load, actor start) is reported apart. ``ratio`` = ltx-ray / bare, from the
rounds' medians.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser, start_ray  # noqa: E402


def bare_loop(model, jobs, out: Path) -> dict:
    """Load the diffusers pipeline once, call it per job, export with diffusers' encoder."""
    import torch
    from diffusers import LTX2Pipeline
    from diffusers.utils.export_utils import encode_video

    from ltx_ray.engine.stages import guidance_kwargs

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pipe = LTX2Pipeline.from_pretrained(model.path, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - start
    rate = pipe.vocoder.config.output_sampling_rate
    per_job, export = [], []
    for job in jobs:
        t = time.perf_counter()
        with torch.inference_mode():
            result = pipe(
                prompt=job.prompt, negative_prompt=job.negative_prompt, width=job.width, height=job.height,
                num_frames=job.num_frames, frame_rate=job.fps, sigmas=job.stages[0].sigmas,
                num_inference_steps=job.stages[0].steps, generator=torch.Generator("cpu").manual_seed(job.seed),
                output_type="np", max_sequence_length=model.profile.max_sequence_length,
                **guidance_kwargs(job),  # the same arguments ltx-ray passes: the same work
            )
        e = time.perf_counter()
        encode_video(result.frames[0], fps=int(job.fps), output_path=str(out / f"{job.job_id}.mp4"),
                     audio=result.audio[0].float().cpu(), audio_sample_rate=rate)
        per_job.append(time.perf_counter() - t)
        export.append(time.perf_counter() - e)
    steady = statistics.mean(per_job[1:]) if len(per_job) > 1 else per_job[0]
    added = statistics.mean(export[1:]) if len(export) > 1 else export[0]
    return {"startup_s": round(load_s, 3), "first_job_s": round(per_job[0], 3), "s_per_job": round(steady, 4),
            "added_s_per_job": round(added, 4)}


def ltx_ray_run(manifest: str, out: Path, in_flight: int) -> dict:
    from ltx_ray.batch.run import RunConfig, run

    stamps: list[float] = []
    order: list[str] = []

    def log(line: str) -> None:
        if line.startswith("["):  # "[i/N ...] JOB_ID ..." once per finished job
            stamps.append(time.perf_counter())
            order.append(line.split("] ", 1)[1].split()[0].rstrip(":"))

    start = time.perf_counter()
    summary = run(
        RunConfig(manifests=[manifest], out=str(out), replicas=1, tasks_in_flight_per_replica=in_flight), log=log
    )
    if summary.succeeded != len(stamps):
        raise SystemExit(f"ltx-ray run failed: {summary}")
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - start
    # What the run adds per job beyond denoising+decoding (the jobs after the first).
    import pyarrow.parquet as pq

    timings = {r["job_id"]: dict(r["timings"]) for r in pq.read_table(out / "results").to_pylist()}
    generate = [timings[j]["generate"] for j in (order[1:] or order)]
    return {
        "added_s_per_job": round(steady - statistics.mean(generate), 4),
        "startup_s": round(stamps[0] - start - steady, 3),
        "wall_s": round(time.perf_counter() - start, 3),
        "s_per_job": round(steady, 4),
    }


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--num-frames", type=int, default=49)
    args = p.parse_args(argv)

    from ltx_ray.engine.weights import resolve_model
    from ltx_ray.storage.manifest import validate_rows, write_manifest

    tmp = Path(tempfile.mkdtemp(prefix="ltx-ray-overhead-"))
    model = resolve_model("tiny")
    rows = [{"job_id": f"ovh-{i:03d}", "prompt": f"a sneaker on a white table, take {i}", "width": args.width,
             "height": args.height, "num_frames": args.num_frames} for i in range(args.jobs)]
    manifest = write_manifest(rows, str(tmp / "m.parquet"))
    jobs = validate_rows([(manifest, rows)], model.profile).jobs

    ray_start = time.perf_counter()
    owns = start_ray(num_cpus=2)
    ray_start_s = time.perf_counter() - ray_start
    rounds = []
    try:
        for r in range(args.rounds):
            rounds.append({
                "bare": bare_loop(model, jobs, tmp / f"bare-{r}"),
                "ltx_ray": ltx_ray_run(manifest, tmp / f"ltx-{r}", 1),
                "ltx_ray_overlap": ltx_ray_run(manifest, tmp / f"ltx2-{r}", 2),
            })
    finally:
        if owns:
            import ray

            ray.shutdown()

    def med(side: str, key: str) -> float:
        return round(statistics.median(r[side][key] for r in rounds), 4)

    bare, ltx, overlap = med("bare", "s_per_job"), med("ltx_ray", "s_per_job"), med("ltx_ray_overlap", "s_per_job")
    return emit("overhead", {
        "jobs": args.jobs,
        "rounds": args.rounds,
        "job": f"t2v {args.width}x{args.height}x{args.num_frames}, tiny model, {model.profile.steps} steps",
        "bare_s_per_job": bare,
        "ltx_ray_s_per_job": ltx,
        "ltx_ray_overlap_s_per_job": overlap,
        "ratio": round(ltx / bare, 4),
        "ratio_overlap": round(overlap / bare, 4),
        # Robust to the machine's noise: per-job time minus the job's own generate time.
        "bare_added_s_per_job": med("bare", "added_s_per_job"),
        "ltx_ray_added_s_per_job": med("ltx_ray", "added_s_per_job"),
        "ltx_ray_overlap_added_s_per_job": med("ltx_ray_overlap", "added_s_per_job"),
        "bare_startup_s": med("bare", "startup_s"),
        "ltx_ray_startup_s": med("ltx_ray", "startup_s"),
        "ray_init_s": round(ray_start_s, 3),
        "per_round": rounds,
    }, args)


if __name__ == "__main__":
    main()
