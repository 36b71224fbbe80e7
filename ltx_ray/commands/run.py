"""``ltx-ray run MANIFEST... --out URI``: generate every row of the manifests."""

from __future__ import annotations

import argparse

from ltx_ray.schema.levers import LEVER_FLAGS

# The RunConfig fields every command that starts a run (run, submit, nightly) takes as flags.
RUN_FLAGS = ["out", "model", "device", "dtype", "profile", "upsampler", "distilled_lora", "enhancer", "address", "replicas",
             "gpus_per_replica", "cpus_per_replica", "parallel", "pool", "offload", "attention", *LEVER_FLAGS, "force",
             "run_id", "gpu_hour_usd"]


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that starts a run, read from RunConfig's fields."""
    from ltx_ray.batch.run import RunConfig
    from ltx_ray.commands.flags import add_model_flags

    # --gpus-per-replica: unset means 1 on cuda, 0 on cpu, decided once --device is known.
    add_model_flags(p, RunConfig, RUN_FLAGS, gpus_per_replica={"default": None, "help": "GPUs each replica owns; "
                                                                 "default 1 on cuda, 0 on cpu"},
                    replicas={"metavar": "N|MIN:MAX"},
                    pool={"metavar": "NAME:replicas=N,gpus=G,parallel=MODE,min_pixels=WxHxF"})


def run_config_from_args(args, manifests: list[str]):
    from pydantic import ValidationError

    from ltx_ray.batch.run import RunConfig
    from ltx_ray.commands.flags import flag_values
    from ltx_ray.errors import RunFatal

    values = flag_values(args, RUN_FLAGS, RunConfig)
    if values["gpus_per_replica"] is None:  # with --pool, each pool says (RunConfig.pool_list)
        values["gpus_per_replica"] = 1 if args.device.startswith("cuda") and not values.get("pool") else 0
    try:
        return RunConfig(manifests=manifests, **values)
    except ValidationError as exc:  # flags that do not fit together: one line each, exit 2
        raise RunFatal("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


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
