"""``ltx-ray nightly --manifests URI_PREFIX --out URI``: the night's run, safe to repeat."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from ltx_ray.commands.run import add_run_options, run_config_from_args


def _date(value: str) -> str:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"--date {value!r} is not YYYY-MM-DD") from None


def add_parser(sub) -> str:
    p = sub.add_parser(
        "nightly",
        help="run the manifests under a prefix that are not completed yet; write _nightly/{date}/summary.json and report.html",
    )
    p.add_argument("--manifests", required=True, help="folder or key prefix holding the night's Parquet manifests (local or URI)")
    p.add_argument("--date", type=_date, default=None, help="the night, YYYY-MM-DD (default: today, UTC); scopes the run id")
    add_run_options(p)
    return "nightly"


def main(args) -> int:
    from ltx_ray.batch.nightly import nightly

    date = args.date or datetime.now(timezone.utc).date().isoformat()
    # The run id is the night's (nightly-DATE); a --run-id given here is not used.
    template = run_config_from_args(args, [args.manifests])
    return nightly(args.manifests, date, template).exit_code
