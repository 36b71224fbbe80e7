"""``ltx-ray expand --recipe pipelines/X.yaml MANIFEST... --out JOBS.parquet``: the job manifest, not run.

Writes the manifest rows a recipe makes from product rows, then checks them the way a run
would; every problem is printed (job, field, value, fix). Exit 0 when all rows are good,
1 when some product rows or jobs have problems (the good rows are still written), 2 when
the recipe or a manifest is unusable.
"""

from __future__ import annotations


def add_parser(sub) -> str:
    p = sub.add_parser("expand", help="turn product manifests into a job manifest with a recipe, without running it")
    p.add_argument("manifests", nargs="+", help="product manifests: Parquet files, folders, globs or URIs")
    p.add_argument("--recipe", required=True, help="a recipe YAML, e.g. pipelines/product-360.yaml")
    p.add_argument("--out", required=True, help="where to write the job manifest (.parquet, local or URI)")
    return "expand"


def main(args) -> int:
    from ltx_ray.errors import RunFatal
    from ltx_ray.products.recipes import expand_manifests, load_recipe
    from ltx_ray.schema.profiles import ModelProfile
    from ltx_ray.storage.manifest import validate_rows, write_manifest

    # A bad recipe (RecipeError) or manifest (ManifestError) stops here with exit 2, via ltx_ray.cli.
    expansion = expand_manifests(load_recipe(args.recipe), args.manifests)
    if not expansion.rows:
        raise RunFatal(f"the recipe made no jobs; {len(expansion.problems)} product row(s) had problems:\n"
                         + "\n".join(f"  {p}" for p in expansion.problems))
    write_manifest(expansion.rows, args.out)
    problems = expansion.problems + validate_rows([(args.out, expansion.rows)], ModelProfile()).problems
    for problem in problems:
        print(f"invalid: {problem}")
    print(f"wrote {len(expansion.rows)} jobs to {args.out}; {len(problems)} problem(s)")
    return 1 if problems else 0
