"""A real two-node Ray cluster on this machine: ``ltx-ray run --address`` and ``ltx-ray submit``.

The cluster is driven only through subprocesses: the session's ``ray_local`` may already be
initialised in this pytest process, and a process holds one Ray connection. Each node has
its own temp dir and free ports, and the cluster has its own auth token, so it neither sees
nor disturbs the other Ray clusters on the machine. It is stopped by killing the process
groups of its two ``ray start --block`` commands: ``ray stop`` would kill every Ray on the
machine, other people's included.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.submit import base_submission_id
from ltx_ray.commands.run import run_config_from_args
from ltx_ray.commands.submit import run_argv
from ltx_ray.storage.manifest import write_manifest
from tests.conftest import REPO

# A real two-node Ray cluster (`ray start`), and submissions against it.
pytestmark = pytest.mark.e2e

SMALL = {"width": 128, "height": 96, "num_frames": 9}
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, proc: subprocess.Popen, log: Path, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: `ray start` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """End one node: its ``ray start --block`` leads a process group holding all its processes.

    SIGKILL at once: the cluster's temp dir is removed after, and a SIGTERM only makes
    ``ray start --block`` spend ~10 s winding down a cluster nothing reads any more.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_model):
    """Head (2 CPUs, dashboard + job server) and a second node (2 CPUs, resource node2)."""
    tmp = tmp_path_factory.mktemp("cluster")
    # Ray's unix sockets live under the temp dir and their paths may not exceed 107 bytes:
    # pytest's tmp paths are too deep for that, so the nodes get short ones of their own.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ltxr-", dir="/tmp"))
    port, dash, client = (free_port() for _ in range(3))
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),  # the job's `ltx-ray run` imports this checkout
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # The agents bind a port the OS picks (0): a port picked here and freed could be taken by
    # the other test worker's Ray before the agent binds it, and an agent without its HTTP
    # port stays up but answers nothing, so every submission got "No available agent" (CI).
    # 2 CPUs per node and 1 per replica: the two replicas land one per node (Ray Data
    # spreads actors), and each node keeps a CPU for Ray Data's read tasks.
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"]
    head_log, node_log = tmp / "head.log", tmp / "node2.log"
    head = subprocess.Popen(
        [BIN / "ray", "start", "--head", *common, f"--port={port}", f"--ray-client-server-port={client}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--dashboard-agent-listen-port=0", f"--temp-dir={ray_tmp / 'h'}"],
        env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    node = None
    try:
        wait_for(lambda: "Ray runtime started" in head_log.read_text(), "the head node starting", head, head_log)
        node = subprocess.Popen(
            [BIN / "ray", "start", *common, f"--address=127.0.0.1:{port}", '--resources={"node2": 1}',
             "--dashboard-agent-listen-port=0", f"--temp-dir={ray_tmp / 'w'}"],
            env=env, stdout=node_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: "Ray runtime started" in node_log.read_text(), "the second node joining", node, node_log)
        wait_for(lambda: _dashboard_up(dash), "the job server answering", head, head_log)
        yield {"gcs": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env, "tmp": tmp}
    finally:
        # Both nodes at once: each `ray start --block` takes seconds to wind down.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(stop, [p for p in (node, head) if p is not None]))
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _dashboard_up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # 401 without the token: the server is up
    except OSError:
        return False


def ltx_ray(cluster, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "ltx-ray", *map(str, argv)], env=cluster["env"], capture_output=True, text=True, timeout=300,
    )


def results(out: Path) -> dict[str, dict]:
    return {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}


@pytest.mark.e2e  # ~1-1.5 min each on a 2-core machine: a real two-node cluster
def test_run_against_a_two_node_cluster_spreads_rows_over_both_nodes(cluster):
    tmp = cluster["tmp"]
    rows = [{"job_id": f"r{i}", "prompt": f"product {i}", **SMALL} for i in range(4)]
    rows.append({"job_id": "bad", "prompt": "p", "image_uri": str(tmp / "missing.png"), **SMALL})
    write_manifest(rows, str(tmp / "run.parquet"))
    out = tmp / "run-out"
    proc = ltx_ray(cluster, "run", tmp / "run.parquet", "--out", out, "--address", cluster["gcs"], "--replicas", 2)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the bad row failed, the others did not
    got = results(out)
    assert {j: r["status"] for j, r in got.items()} == {"r0": "succeeded", "r1": "succeeded", "r2": "succeeded", "r3": "succeeded", "bad": "failed"}
    assert len({r["node_id"] for r in got.values() if r["error_stage"] != "validate"}) == 2


@pytest.mark.e2e  # ~1-1.5 min each on a 2-core machine: a real two-node cluster
def test_submit_runs_the_job_on_the_cluster_and_a_second_submit_attaches_instead_of_rerunning(cluster):
    tmp = cluster["tmp"]
    write_manifest([{"job_id": f"s{i}", "prompt": f"item {i}", **SMALL} for i in range(4)], str(tmp / "submit.parquet"))
    out = tmp / "submit-out"
    argv = ["submit", tmp / "submit.parquet", "--out", out, "--address", cluster["dashboard"], "--replicas", 2, "--name", "nightly-2026-11-25"]
    first = ltx_ray(cluster, *argv, "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    got = results(out)
    assert {r["status"] for r in got.values()} == {"succeeded"} and len(got) == 4
    assert len({r["node_id"] for r in got.values()}) == 2
    submission_id = next(line.split(": ", 1)[1] for line in first.stdout.splitlines() if line.startswith("submission_id: "))
    assert submission_id.startswith("ltx-ray-nightly-2026-11-25-")
    assert {r["run_id"] for r in got.values()} == {submission_id}
    assert "--address auto" in first.stdout  # the entrypoint joins the cluster it was submitted to
    summary = json.loads((out / "_runs" / submission_id / "summary.json").read_text())
    assert summary["succeeded"] == 4

    second = ltx_ray(cluster, *argv, "--wait")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "attaching instead of starting it twice" in second.stdout
    assert f"submission_id: {submission_id}" in second.stdout
    assert results(out) == got  # nothing was generated again


@pytest.mark.e2e  # ~1-1.5 min each on a 2-core machine: a real two-node cluster
def test_submit_waits_and_exits_1_when_rows_failed(cluster):
    tmp = cluster["tmp"]
    # An invalid row: the job fails it at validation, so no replica has to start for it.
    write_manifest([{"job_id": "only-bad", "prompt": "p", "width": 250, "height": 96, "num_frames": 9}], str(tmp / "bad.parquet"))
    proc = ltx_ray(cluster, "submit", tmp / "bad.parquet", "--out", tmp / "bad-out", "--address", cluster["dashboard"], "--wait")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "job 'only-bad': width = 250: must be a multiple of 32" in proc.stdout  # the job's log streamed back
    assert results(tmp / "bad-out")["only-bad"]["error_stage"] == "validate"


def test_submit_to_a_server_that_is_not_there_is_fatal(tmp_path):
    from ltx_ray.cli import main

    code = main(["submit", str(tmp_path / "m.parquet"), "--out", str(tmp_path), "--address", f"http://127.0.0.1:{free_port()}"])
    assert code == 2


def test_the_entrypoint_carries_every_run_option_and_parses_back_to_the_same_run(tmp_path):
    import argparse

    from ltx_ray.commands import run as run_cmd
    from ltx_ray.commands import submit as submit_cmd

    def parser():
        p = argparse.ArgumentParser()
        sub = p.add_subparsers(dest="command")
        run_cmd.add_parser(sub)
        submit_cmd.add_parser(sub)
        return p

    submitted = parser().parse_args(
        ["submit", "s3://b/m.parquet", "--out", "s3://b/out", "--address", "http://h:8265", "--model", "/models/ltx",
         "--device", "cuda", "--dtype", "bfloat16", "--replicas", "8", "--gpus-per-replica", "2", "--force",
         "--recipe", "/opt/ltx-ray/pipelines/product-360.yaml", "--gpu-hour-usd", "2.5",
         "--distilled-lora", "s3://b/loras/stage2.safetensors"]
    )
    argv = run_argv(submitted, submitted.manifests)
    rerun = parser().parse_args(["run", *argv])
    assert run_config_from_args(rerun, rerun.manifests) == run_config_from_args(submitted, submitted.manifests).model_copy(update={"address": None})
    assert "--address" not in argv
    assert rerun.distilled_lora == "s3://b/loras/stage2.safetensors"
    assert rerun.recipe == "/opt/ltx-ray/pipelines/product-360.yaml"
    # The id depends on the run: another output is another submission, the same run the same one.
    assert base_submission_id("n", argv) == base_submission_id("n", list(argv))
    assert base_submission_id("n", argv) != base_submission_id("n", [a.replace("s3://b/out", "s3://b/other") for a in argv])


class FakeJobClient:
    """A fake of JobSubmissionClient's list/submit, for the attempt bookkeeping alone."""

    def __init__(self, jobs: dict[str, str]):
        from types import SimpleNamespace

        self.jobs = [SimpleNamespace(submission_id=i, status=SimpleNamespace(value=s), entrypoint="ltx-ray run ...") for i, s in jobs.items()]
        self.submitted: list[dict] = []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        return kwargs["submission_id"]


@pytest.mark.parametrize(
    "existing,expected_id,attached",
    [
        ({}, "BASE", False),
        ({"BASE": "RUNNING"}, "BASE", True),
        ({"BASE": "SUCCEEDED"}, "BASE", True),
        ({"BASE": "FAILED"}, "BASE-r2", False),
        ({"BASE": "FAILED", "BASE-r2": "STOPPED"}, "BASE-r3", False),
        ({"BASE": "FAILED", "BASE-r2": "PENDING"}, "BASE-r2", True),
    ],
)
def test_with_a_fake_job_client_a_run_is_attached_while_live_or_done_and_retried_after_it_failed(existing, expected_id, attached):
    from ltx_ray.batch.submit import submit

    argv = ["s3://b/m.parquet", "--out", "s3://b/out"]
    base = base_submission_id("night", argv)
    client = FakeJobClient({k.replace("BASE", base): v for k, v in existing.items()})
    got = submit(client, "night", argv, None, log=lambda *_: None)
    assert (got.submission_id, got.attached) == (expected_id.replace("BASE", base), attached)
    assert len(client.submitted) == (0 if attached else 1)
    if not attached:
        entrypoint = shlex.split(client.submitted[0]["entrypoint"])
        assert entrypoint[:2] == ["ltx-ray", "run"] and entrypoint[-2:] == ["--run-id", got.submission_id]


class AgentlessJobClient(FakeJobClient):
    """A fake job server whose head agent is not up for the first ``refusals`` submissions."""

    def __init__(self, refusals: int):
        super().__init__({})
        self.refusals = refusals

    def submit_job(self, **kwargs):
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later..")
        return super().submit_job(**kwargs)


def test_a_submission_waits_for_the_clusters_job_agent_and_is_fatal_when_it_never_comes():
    from ltx_ray.batch.submit import submit
    from ltx_ray.errors import RunFatal

    said = []
    late = AgentlessJobClient(refusals=2)  # the agent registers after two refused tries
    got = submit(late, "night", ["m.parquet"], None, log=said.append, agent_poll_s=0)
    assert not got.attached and len(late.submitted) == 1
    assert sum("job agent is not up yet" in line for line in said) == 2

    never = AgentlessJobClient(refusals=10**6)
    with pytest.raises(RunFatal, match="no job agent on its head node .*dashboard_agent.log"):
        submit(never, "night", ["m.parquet"], None, log=said.append, agent_wait_s=0, agent_poll_s=0)
    assert never.submitted == []
