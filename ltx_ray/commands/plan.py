"""``ltx-ray plan MANIFEST...``: what each row will run and cost, without loading weights."""

from __future__ import annotations

import json


def add_parser(sub) -> str:
    from ltx_ray.batch.run import RunConfig
    from ltx_ray.commands.flags import add_model_flags

    p = sub.add_parser("plan", help="each row's stages, sigmas, tokens, FLOPs and GPU memory, before a run; no weights loaded")
    p.add_argument("manifests", nargs="+", help="Parquet manifests: files, folders, globs or URIs")
    add_model_flags(p, RunConfig, ["model", "profile", "dtype", "pool"],
                    dtype={"default": "bfloat16", "help": "the dtype the run will use (default bfloat16, a GPU run's)"},
                    pool={"metavar": "NAME:replicas=N,gpus=G,parallel=MODE,min_pixels=WxHxF",
                           "help": "the run's --pool flags: each row's line names the pool it goes to"})
    p.add_argument("--json", action="store_true", help="print one JSON document (a list of row plans) on stdout")
    return "plan"


def main(args) -> int:
    import sys

    from ltx_ray.batch.pool import check_pools, route
    from ltx_ray.engine.sizes import transformer_shape
    from ltx_ray.errors import RunFatal
    from ltx_ray.engine.weights import resolve_model
    from ltx_ray.schema.cost import plan_job
    from ltx_ray.storage.manifest import load_and_validate

    pools = args.pool or []
    try:
        check_pools(pools)
    except ValueError as exc:
        raise RunFatal(str(exc)) from None
    model = resolve_model(args.model, args.profile)
    shape = transformer_shape(model)
    result = load_and_validate(args.manifests, model.profile)
    plans = [plan_job(job, model.profile, shape, args.dtype) for job in result.jobs]
    # The pool each row goes to, as `ltx-ray run --pool ...` routes it: by width x height x frames.
    routed = {p.job_id: route(pools, p.width, p.height, p.num_frames).name for p in plans} if pools else {}
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if args.json:
        print(json.dumps([{**p.model_dump(), **({"pool": routed[p.job_id]} if pools else {})} for p in plans], indent=1))
        return 1 if result.invalid else 0
    for p in plans:
        pool = f" -> pool {routed[p.job_id]}" if pools else ""
        stages = "; ".join(
            f"stage {s.stage} {s.width}x{s.height} {s.video_tokens} video + {s.audio_tokens} audio tokens, "
            f"{s.steps} steps x {s.transformer_passes_per_step} passes, sigmas {s.sigmas[0]:.4g}..{s.sigmas[-1]:.4g}, "
            f"{s.tflops:.4g} TFLOP" for s in p.stages)
        source = " (a retake is its source's size: costed as the row says)" if p.size_from_source else ""
        print(f"{p.job_id}: {p.profile} {p.task} {p.width}x{p.height}x{p.num_frames} ({'at most ' if p.auto_seconds else ''}{p.seconds} s){source}: {stages}; "
              f"{p.tflops:.4g} TFLOP, peak GPU ~{p.peak_gpu_gib} GiB ({p.weights_gib} GiB weights, {args.dtype}){pool}")
    total = sum(p.tflops for p in plans)
    peak = max((p.peak_gpu_gib for p in plans), default=0.0)
    print(f"{len(plans)} rows on {model.profile.name}: {total:.4g} TFLOP of transformer passes, "
          f"largest peak ~{peak} GiB; {len(result.invalid)} invalid rows")
    for pool in pools:
        mine = [p for p in plans if routed[p.job_id] == pool.name]
        print(f"{pool.describe()}: {len(mine)} rows, {sum(p.tflops for p in mine):.4g} TFLOP, "
              f"largest peak ~{max((p.peak_gpu_gib for p in mine), default=0.0)} GiB")
    return 1 if result.invalid else 0
