"""``ltx-ray make-tiny-model DIR``: write the tiny random LTX-2 in diffusers format."""

from __future__ import annotations


def add_parser(sub) -> str:
    p = sub.add_parser("make-tiny-model", help="write the tiny random LTX-2 (diffusers format) to DIR")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    return "make-tiny-model"


def main(args) -> int:
    from ltx_ray.engine.tiny_model import make_tiny_model

    print(make_tiny_model(args.dir, seed=args.seed))
    return 0
