"""``ltx-ray doctor``: one line per check, OK or FAIL with the fix; exit 0 when all pass, else 1.

Doctor reports; it is not a run, so a failed check (a missing model folder included) is
exit 1, never run's fatal exit 2.
"""

from __future__ import annotations


def add_parser(sub) -> str:
    p = sub.add_parser("doctor", help="check the install, GPUs and (optionally) a cluster, a store and a model")
    p.add_argument("--address", default=None, help="a Ray cluster to reach (host:port, auto, ray://...)")
    p.add_argument("--out", default=None, help="an output folder or URI to write, read and delete a probe object in")
    p.add_argument("--model", default=None, help="a model ('tiny', a folder, a URI, a cached hub id) whose components to check")
    p.add_argument("--lock", default=None, help="the requirements.lock to check versions against "
                                                "(default: $LTX_RAY_LOCK, then the one beside the source)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    return "doctor"


def main(args) -> int:
    from ltx_ray.doctor.report import format_table
    from ltx_ray.doctor.run import run_doctor

    report = run_doctor(lock=args.lock, address=args.address, out=args.out, model=args.model)
    print(report.model_dump_json(indent=2) if args.json else format_table(report))
    return 0 if report.ok else 1
