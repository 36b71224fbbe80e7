"""``ltx-ray submit MANIFEST... --out URI --address http://HEAD:8265``: the same run as a Ray Job."""

from __future__ import annotations

import argparse

from ltx_ray.commands.run import add_run_options

# Run options that do not travel into the job: the job runs on the cluster it is submitted
# to (Ray sets RAY_ADDRESS for it), and submit names the run after its submission id.
NOT_FORWARDED = {"address", "run_id"}


def add_parser(sub) -> str:
    # "resolve" lets --address below replace run's --address: here it is the job server.
    p = sub.add_parser("submit", conflict_handler="resolve", help="submit the run to a Ray cluster as a Ray Job (at most once)")
    p.add_argument("manifests", nargs="+", help="Parquet manifests as the cluster sees them (object-store URIs, or paths on the head node)")
    p.add_argument("--recipe", default=None, help="a pipelines/*.yaml recipe as the cluster sees it (e.g. /opt/ltx-ray/pipelines/X.yaml in the image)")
    add_run_options(p)
    p.add_argument("--address", required=True, help="Ray job server (dashboard) address, e.g. http://HEAD:8265")
    p.add_argument("--name", default="run", help="names the submission; with the run's arguments it makes the submission id")
    p.add_argument("--wait", action="store_true", help="stream the job's logs and exit with the run's exit code (0, 1, 2)")
    return "submit"


def run_argv(args, manifests: list[str]) -> list[str]:
    """The ``ltx-ray run`` arguments equivalent to ``args``: every run option that differs from its default.

    Read from the parser ``add_run_options`` builds, so a flag added there travels without
    being listed here. argparse has no public way to list a parser's actions; ``_actions``
    has been stable since Python 2.7.
    """
    probe = argparse.ArgumentParser(add_help=False)
    add_run_options(probe)
    argv = list(manifests)
    if getattr(args, "recipe", None):
        argv += ["--recipe", args.recipe]
    for action in probe._actions:
        if not action.option_strings or action.dest in NOT_FORWARDED:
            continue
        value = getattr(args, action.dest)
        flag = max(action.option_strings, key=len)
        if action.required or value != action.default:
            if isinstance(action, argparse._StoreTrueAction):
                argv.append(flag)
            elif isinstance(action, argparse.BooleanOptionalAction):  # --compile / --no-compile
                argv.append(action.option_strings[0 if value else 1])
            elif isinstance(action, argparse._AppendAction):  # --pool A --pool B
                argv += [part for item in value for part in (flag, str(item))]
            else:
                argv += [flag, str(value)]
    return argv


def main(args) -> int:
    from ray.job_submission import JobSubmissionClient

    from ltx_ray.batch.submit import submit, wait
    from ltx_ray.errors import RunFatal

    try:
        client = JobSubmissionClient(args.address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RunFatal(f"cannot reach the Ray job server at --address {args.address!r}: {exc}") from None
    submission = submit(client, args.name, run_argv(args, args.manifests), args.run_id)
    print(f"submission_id: {submission.submission_id}")
    if not args.wait:
        return 0
    return wait(client, submission, args.out)
