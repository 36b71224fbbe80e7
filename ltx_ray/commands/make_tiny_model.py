"""``ltx-ray make-tiny-model DIR [--like GENERATION]``: write a tiny random LTX-2 in diffusers format.

Without ``--like`` it writes the default tiny model; with it, an architecture twin of that
generation in the real repo's layout (``engine/twins.py``).
"""

from __future__ import annotations

from ltx_ray.engine.twins import TWIN_GENERATIONS  # torch-free: --help loads no model library


def add_parser(sub) -> str:
    p = sub.add_parser("make-tiny-model", help="write the tiny random LTX-2 (diffusers format) to DIR")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--like",
        choices=TWIN_GENERATIONS,
        default=None,
        help="write an architecture twin of this generation instead: real configs and layout, tiny widths",
    )
    return "make-tiny-model"


def main(args) -> int:
    if args.like is None:
        from ltx_ray.engine.tiny_model import make_tiny_model

        print(make_tiny_model(args.dir, seed=args.seed))
    else:
        from ltx_ray.engine.twins import make_twin

        print(make_twin(args.dir, like=args.like, seed=args.seed))
    return 0
