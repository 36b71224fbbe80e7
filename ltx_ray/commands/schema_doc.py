"""``ltx-ray schema-doc [--write FILE]``: render manifests/SCHEMA.md from the schema."""

from __future__ import annotations

import sys


def add_parser(sub) -> str:
    p = sub.add_parser("schema-doc", help="print manifests/SCHEMA.md, generated from the schema")
    p.add_argument("--write", default=None, help="write to this file instead of stdout")
    return "schema-doc"


def main(args) -> int:
    from ltx_ray.schema.doc import render_schema_doc

    text = render_schema_doc()
    if args.write:
        with open(args.write, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
