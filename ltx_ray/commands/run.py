"""``ltx-ray run MANIFEST... --out URI``: generate every row of the manifests."""

from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that starts a run (run, submit, nightly)."""
    p.add_argument("--out", required=True, help="output folder or URI (s3://, gs://, ...)")
    p.add_argument("--model", default="tiny", help="'tiny' (default, random weights), a local folder, a URI or a hub id")
    p.add_argument("--device", default="cpu", help="torch device of each replica (cpu, cuda)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--replicas", type=int, default=1, help="generation actors, started all at once")
    p.add_argument("--gpus-per-replica", type=float, default=None, help="default 1 on cuda, 0 on cpu")
    p.add_argument("--cpus-per-replica", type=float, default=1)
    p.add_argument("--offload", default="auto", choices=["auto", "none", "model", "group"],
                   help="none: the model must fit the replica's GPUs; model / group: CPU offloading for small cards")
    p.add_argument("--force", action="store_true", help="regenerate jobs that already succeeded")
    p.add_argument("--run-id", default=None)
    p.add_argument("--gpu-hour-usd", type=float, default=None, help="price of a GPU-hour, for the cost in the run report")


def run_config_from_args(args, manifests: list[str]):
    from ltx_ray.batch.run import RunConfig

    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1 if args.device.startswith("cuda") else 0
    return RunConfig(
        manifests=manifests, out=args.out, model=args.model, device=args.device, dtype=args.dtype,
        address=args.address, replicas=args.replicas, gpus_per_replica=gpus,
        cpus_per_replica=args.cpus_per_replica, offload=args.offload, force=args.force, run_id=args.run_id,
        gpu_hour_usd=args.gpu_hour_usd,
    )


def add_parser(sub) -> str:
    p = sub.add_parser("run", help="generate every row of the manifests")
    p.add_argument("manifests", nargs="+", help="Parquet manifests: files, folders, globs or URIs")
    p.add_argument("--recipe", default=None, help="a pipelines/*.yaml recipe: the manifests are product tables it expands to jobs")
    add_run_options(p)
    return "run"


def main(args) -> int:
    from ltx_ray.batch.run import run
    from ltx_ray.job.record import new_run_id

    if args.recipe is None:
        return run(run_config_from_args(args, args.manifests)).exit_code
    # A recipe run is an ordinary run of the manifest the recipe expands to, kept beside the run's other files.
    from ltx_ray.products.recipes import run_recipe_manifest

    args.run_id = args.run_id or new_run_id()
    manifest, problems = run_recipe_manifest(args.recipe, args.manifests, args.out, args.run_id)
    code = run(run_config_from_args(args, [manifest])).exit_code
    return max(code, 1) if problems else code
