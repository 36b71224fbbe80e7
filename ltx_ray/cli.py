"""``ltx-ray`` command line. Exit codes: 0 all rows succeeded, 1 some rows failed, 2 fatal.

Each subcommand lives in its own module under ``ltx_ray/commands/`` with two functions,
``add_parser(subparsers)`` and ``main(args) -> int``; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ltx_ray.errors import EXIT_FATAL, ReplicaFatal, RunFatal

# Modules under ltx_ray.commands, in the order `ltx-ray --help` lists them.
COMMANDS = [
    "run",
    "submit",
    "nightly",
    "serve",
    "validate",
    "plan",
    "expand",
    "make_tiny_model",
    "schema_doc",
    "qc",
    "doctor",
]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The ``ltx-ray`` parser and each subcommand's ``main``; tests parse command lines with it."""
    parser = argparse.ArgumentParser(prog="ltx-ray", description="Parquet manifests -> LTX-2 videos on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {}
    for name in COMMANDS:
        module = importlib.import_module(f"ltx_ray.commands.{name}")
        handlers[module.add_parser(sub)] = module.main
    return parser, handlers


def main(argv: list[str] | None = None) -> int:

    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except (RunFatal, ReplicaFatal) as exc:
        print(f"ltx-ray {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
