"""Submit a run to a Ray cluster as a Ray Job, at most once, and optionally wait for it.

The job's entrypoint is the equivalent ``ltx-ray run ...`` command line, so a submitted run
and a local one are the same code with the same flags. Its submission id is derived from
the name and the run's command line: submitting the same run twice attaches to the first
job instead of starting a second one. Only when the last attempt ended failed or stopped
does a new submission start a new attempt (``...-r2``), which resumes through the per-job
results (succeeded jobs are skipped).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shlex
import sys
import time

from pydantic import BaseModel, Field

from ltx_ray.errors import EXIT_FATAL, EXIT_OK, EXIT_ROWS_FAILED, RunFatal
from ltx_ray.storage.store import OutputStore

# Terminal Ray Job states after which a new submission is a retry, not a duplicate.
RETRYABLE = {"FAILED", "STOPPED"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Ray's job server answers this (HTTP 500) until the head node's dashboard agent has
# registered: for seconds after `ray start`, longer on a loaded head. It says to try again.
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 120


class Submission(BaseModel):
    """What ``submit`` did."""

    submission_id: str = Field(description="Ray Job submission id of the attempt submitted or attached to")
    attached: bool = Field(description="True when an identical run was already submitted and no new job was started")
    status: str = Field(description="Ray Job status when submitted or attached")
    run_id: str = Field(description="Run id of the run inside the job; its summary is {out}/_runs/{run_id}/summary.json")
    entrypoint: str


def base_submission_id(name: str, run_argv: list[str]) -> str:
    """``ltx-ray-{name}-{hash}``: the same name and the same run give the same id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    digest = hashlib.sha256(json.dumps(run_argv).encode()).hexdigest()[:10]
    return f"ltx-ray-{slug}-{digest}"


def submit(client, name: str, run_argv: list[str], run_id: str | None, log=print,
           agent_wait_s: float = AGENT_WAIT_S, agent_poll_s: float = 2.0) -> Submission:
    """Submit ``ltx-ray run`` with ``run_argv`` (no ``--run-id``) unless the same run is already there.

    ``client`` is a ``ray.job_submission.JobSubmissionClient``. ``run_id`` None names the run
    after the submission id of its attempt.
    """
    base = base_submission_id(name, run_argv + ([f"--run-id={run_id}"] if run_id else []))
    attempts = {}
    for job in client.list_jobs():
        if job.submission_id and re.fullmatch(re.escape(base) + r"(-r\d+)?", job.submission_id):
            number = int(job.submission_id.rsplit("-r", 1)[1]) if job.submission_id != base else 1
            attempts[number] = job
    if attempts:
        last_number = max(attempts)
        last = attempts[last_number]
        status = str(last.status.value if hasattr(last.status, "value") else last.status)
        if status not in RETRYABLE:
            log(f"already submitted as {last.submission_id} ({status}): attaching instead of starting it twice")
            return Submission(
                submission_id=last.submission_id, attached=True, status=status,
                run_id=run_id or last.submission_id, entrypoint=last.entrypoint,
            )
        log(f"{last.submission_id} ended {status}: submitting attempt {last_number + 1} (succeeded jobs are skipped)")
        submission_id = f"{base}-r{last_number + 1}"
    else:
        submission_id = base
    run_id = run_id or submission_id
    # Inside a Ray Job, RAY_ADDRESS names the cluster and `--address auto` follows it; without
    # it `ltx-ray run` would start a fresh local Ray on the head and leave the workers idle.
    entrypoint = shlex.join(["ltx-ray", "run", *run_argv, "--address", "auto", "--run-id", run_id])
    _submit_when_agent_is_up(client, agent_wait_s, agent_poll_s, log, entrypoint=entrypoint, submission_id=submission_id,
                             metadata={"ltx_ray_run_id": run_id})
    log(f"submitted {submission_id}: {entrypoint}")
    return Submission(submission_id=submission_id, attached=False, status="PENDING", run_id=run_id, entrypoint=entrypoint)


def _submit_when_agent_is_up(client, wait_s: float, poll_s: float, log, **job) -> None:
    """``client.submit_job(**job)``, retried while the cluster's job agent is not up yet.

    Each refusal already took Ray's own 10 s wait for the agent; past ``wait_s`` the run is
    fatal (exit 2) naming what to check, instead of a traceback.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as exc:
            if NO_AGENT not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise RunFatal(
                    f"the Ray job server has no job agent on its head node after {wait_s:.0f} s ({NO_AGENT}); "
                    "check the head's dashboard_agent.log (a port it could not bind?) or submit again later"
                ) from None
            log(f"the cluster's job agent is not up yet ({NO_AGENT}): trying again")
            time.sleep(poll_s)


def wait(client, submission: Submission, out: str, log_stream=sys.stdout, poll_s: float = 1.0) -> int:
    """Stream the job's logs until it ends; return ``ltx-ray run``'s exit code (0, 1 or 2)."""

    async def tail():
        async for lines in client.tail_job_logs(submission.submission_id):
            log_stream.write(lines)
            log_stream.flush()

    asyncio.run(tail())
    # The log stream closes when the driver exits; the status may lag it by a moment.
    info = client.get_job_info(submission.submission_id)
    while str(info.status.value) not in TERMINAL:
        time.sleep(poll_s)
        info = client.get_job_info(submission.submission_id)
    status = str(info.status.value)
    if status == "SUCCEEDED":
        return EXIT_OK
    if info.driver_exit_code in (EXIT_ROWS_FAILED, EXIT_FATAL):
        return info.driver_exit_code
    # No driver exit code (stopped, or the driver never started): the run's own summary
    # tells "some rows failed" from "the run did not finish".
    return exit_code_from_summary(out, submission.run_id)


def exit_code_from_summary(out: str, run_id: str) -> int:
    """1 when the run wrote its summary with failed rows, 2 when it wrote none (it did not finish)."""
    store = OutputStore(out)
    name = f"_runs/{run_id}/summary.json"
    if not store.exists(name):
        return EXIT_FATAL
    summary = json.loads(store.get(name))
    return EXIT_ROWS_FAILED if summary.get("failed") or summary.get("invalid") else EXIT_OK
