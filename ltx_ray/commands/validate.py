"""``ltx-ray validate MANIFEST...``: print every problem at once; exit 1 if there is any."""

from __future__ import annotations


def add_parser(sub) -> str:
    p = sub.add_parser("validate", help="check manifests and print every problem; exit 1 if any")
    p.add_argument("manifests", nargs="+")
    return "validate"


def main(args) -> int:
    from ltx_ray.schema.profiles import ModelProfile
    from ltx_ray.storage.manifest import load_and_validate

    result = load_and_validate(args.manifests, ModelProfile())
    for problem in result.problems:
        print(problem)
    print(f"{len(result.jobs)} valid rows, {len(result.invalid)} invalid rows in {len(result.sources)} manifest(s)")
    return 1 if result.invalid else 0
