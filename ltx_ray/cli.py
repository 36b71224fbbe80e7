"""``ltx-ray`` command line. Exit codes: 0 all rows succeeded, 1 some rows failed, 2 fatal."""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_ROWS_FAILED, EXIT_FATAL = 0, 1, 2


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifests", nargs="+", help="Parquet manifests: files, folders, globs or URIs")
    p.add_argument("--out", required=True, help="output folder or URI (s3://, gs://, ...)")
    p.add_argument("--model", default="tiny", help="'tiny' (default, random weights), a local folder, a URI or a hub id")
    p.add_argument("--device", default="cpu", help="torch device of each replica (cpu, cuda)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--replicas", type=int, default=1, help="generation actors, started all at once")
    p.add_argument("--gpus-per-replica", type=float, default=None, help="default 1 on cuda, 0 on cpu")
    p.add_argument("--cpus-per-replica", type=float, default=1)
    p.add_argument("--force", action="store_true", help="regenerate jobs that already succeeded")
    p.add_argument("--run-id", default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltx-ray", description="Parquet manifests -> LTX-2 videos on Ray")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="generate every row of the manifests")
    _add_run_options(p_run)

    p_val = sub.add_parser("validate", help="check manifests and print every problem; exit 1 if any")
    p_val.add_argument("manifests", nargs="+")

    p_tiny = sub.add_parser("make-tiny-model", help="write the tiny random LTX-2 in diffusers format")
    p_tiny.add_argument("dir")
    p_tiny.add_argument("--seed", type=int, default=0)

    p_doc = sub.add_parser("schema-doc", help="print manifests/SCHEMA.md, generated from the schema")
    p_doc.add_argument("--write", default=None, help="write to this file instead of stdout")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FATAL


def _dispatch(args) -> int:
    from ltx_ray.manifest import ManifestError
    from ltx_ray.model_source import ModelNotFound
    from ltx_ray.storage import OutputNotWritable

    fatal = (ManifestError, ModelNotFound, OutputNotWritable)
    try:
        if args.command == "run":
            from ltx_ray.run import RunConfig, run

            gpus = args.gpus_per_replica
            if gpus is None:
                gpus = 1 if args.device.startswith("cuda") else 0
            config = RunConfig(
                manifests=args.manifests, out=args.out, model=args.model, device=args.device, dtype=args.dtype,
                address=args.address, replicas=args.replicas, gpus_per_replica=gpus,
                cpus_per_replica=args.cpus_per_replica, force=args.force, run_id=args.run_id,
            )
            return run(config).exit_code
        if args.command == "validate":
            from ltx_ray.manifest import load_and_validate
            from ltx_ray.schema import ModelDefaults

            result = load_and_validate(args.manifests, ModelDefaults())
            for problem in result.problems:
                print(problem)
            print(f"{len(result.jobs)} valid rows, {len(result.invalid)} invalid rows in {len(result.sources)} manifest(s)")
            return EXIT_ROWS_FAILED if result.invalid else EXIT_OK
        if args.command == "make-tiny-model":
            from ltx_ray.tiny_model import make_tiny_model

            print(make_tiny_model(args.dir, seed=args.seed))
            return EXIT_OK
        if args.command == "schema-doc":
            from ltx_ray.schema_doc import render_schema_doc

            text = render_schema_doc()
            if args.write:
                with open(args.write, "w") as fh:
                    fh.write(text)
            else:
                sys.stdout.write(text)
            return EXIT_OK
    except fatal as exc:
        print(f"ltx-ray: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
