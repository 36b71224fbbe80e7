"""Fault injection: a worker killed mid-job, the driver killed mid-run. Nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.storage.manifest import write_manifest
from tests.conftest import REPO

# Each test kills part of a run: a worker of the session's Ray, or an `ltx-ray run` subprocess with its own Ray.
pytestmark = pytest.mark.e2e

SMALL = {"width": 256, "height": 160, "num_frames": 17}


def assert_outputs_agree_with_results(out, job_ids):
    """Every job: one succeeded results row, one mp4 whose sha256 the row names; no partial files."""
    import hashlib

    rows = pq.read_table(out / "results").to_pylist()
    assert sorted(r["job_id"] for r in rows) == sorted(job_ids)  # exactly one row each
    assert {r["status"] for r in rows} == {"succeeded"}
    for r in rows:
        assert hashlib.sha256((out / f"{r['job_id']}.mp4").read_bytes()).hexdigest() == r["sha256"]
    assert sorted(p.stem for p in out.glob("*.mp4")) == sorted(job_ids)
    assert [p for p in out.rglob("*") if ".partial" in p.name] == []


def test_a_worker_killed_mid_job_is_replaced_and_its_row_retried(ray_local, tmp_path):
    marker = tmp_path / "crashed"
    rows = [{"job_id": f"j{i}", "prompt": f"clip {i}", **SMALL} for i in range(3)]
    rows[1]["metadata"] = json.dumps({"crash_once_marker": str(marker)})
    write_manifest(rows, str(tmp_path / "m.parquet"))
    summary = run(
        RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(tmp_path / "out"), engine="tests.faults:CrashOnceEngine"),
        log=lambda *_: None,
    )
    assert marker.exists(), "the fault was not injected"
    assert (summary.succeeded, summary.failed) == (3, 0)
    assert_outputs_agree_with_results(tmp_path / "out", ["j0", "j1", "j2"])


def test_a_killed_driver_is_resumed_by_a_rerun_without_redoing_finished_rows(ray_local, tmp_path):
    rows = [{"job_id": f"k{i}", "prompt": f"clip {i}", **SMALL} for i in range(6)]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "ltx_ray.cli", "run", str(tmp_path / "m.parquet"), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "results").glob("*.parquet"))) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies; its local Ray follows
    proc.wait()
    # A worker already past denoising may still commit its job while Ray's processes wind
    # down (atomically: a results row and its files, or nothing): count once that settles.
    done_before, stable_since = -1, time.time()
    while time.time() - stable_since < 5 and time.time() < deadline:
        now = len(list((out / "results").glob("*.parquet")))
        if now != done_before:
            done_before, stable_since = now, time.time()
        time.sleep(0.5)
    assert 2 <= done_before < 6, "kill the driver while the run is half done"

    # The rerun, on the session's Ray (a second Ray of its own would prove nothing more).
    lines: list[str] = []
    rerun = run(RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(out)), log=lines.append)
    assert rerun.exit_code == 0, lines
    assert any(f"{6 - done_before} to generate, {done_before} already done" in line for line in lines), lines
    assert_outputs_agree_with_results(out, [f"k{i}" for i in range(6)])



def test_a_node_removed_mid_run_loses_no_row(tmp_path):
    rows = [{"job_id": f"n{i}", "prompt": f"clip {i}", **SMALL} for i in range(6)]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "tests.node_loss", str(tmp_path / "m.parquet"), str(out)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    removed = proc.stdout.split("REMOVED ", 1)[1].splitlines()[0].strip()
    assert removed, "the node was not removed"
    assert (summary["succeeded"], summary["failed"]) == (6, 0)
    assert_outputs_agree_with_results(out, [f"n{i}" for i in range(6)])


def fault_run(tmp_path, rows, **config):
    write_manifest(rows, str(tmp_path / "m.parquet"))
    summary = run(RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(tmp_path / "out"),
                            engine="tests.faults:FaultyDeviceEngine", **config), log=lambda *_: None)
    return summary, {r["job_id"]: r for r in pq.read_table(tmp_path / "out" / "results").to_pylist()}


def test_a_replica_that_loses_its_gpu_ends_and_its_job_succeeds_on_a_new_one_with_no_row_failed(ray_local, tmp_path):
    """A CUDA error poisons the process: the replica ends without a row, Ray Data starts a new
    one and hands it the job; an out-of-memory is freed and retried on the same replica."""
    tiny = {"width": 64, "height": 64, "num_frames": 9}
    rows = [{"job_id": f"j{i}", "prompt": f"clip {i}", **tiny} for i in range(4)]
    rows[1]["metadata"] = json.dumps({"fault": "device_lost_once", "marker": str(tmp_path / "lost")})
    rows[2]["metadata"] = json.dumps({"fault": "oom_once", "marker": str(tmp_path / "oom")})
    rows.append({"job_id": "poison", "prompt": "p", **tiny, "metadata": json.dumps({"fault": "device_lost_always"})})
    summary, results = fault_run(tmp_path, rows)
    assert (tmp_path / "lost").exists() and (tmp_path / "oom").exists(), "the faults were not injected"
    assert {j: r["status"] for j, r in results.items()} == {"j0": "succeeded", "j1": "succeeded", "j2": "succeeded",
                                                            "j3": "succeeded", "poison": "failed"}
    assert (summary.succeeded, summary.failed) == (4, 1)
    assert [results[j]["dispatch_attempts"] for j in ("j0", "j1", "j2", "j3")] == [1, 2, 1, 1]
    sidecars = {j: json.loads((tmp_path / "out" / f"{j}.json").read_text()) for j in ("j1", "j2")}
    assert sidecars["j1"]["generation"]["replica_pid"] != int((tmp_path / "lost").read_text())  # another process
    assert sidecars["j2"]["generation"]["freed"] >= 1  # freed, then generated on the same replica
    # A job that breaks every replica it is handed fails as a row after three, naming the fault.
    poison = results["poison"]
    assert poison["dispatch_attempts"] == 4 and poison["error_stage"] == "generate"
    assert "3 replicas failed while generating this job (last: RuntimeError: CUDA error" in poison["error"]
    assert_outputs_agree_with_results_for(tmp_path / "out", ["j0", "j1", "j2", "j3"])


def assert_outputs_agree_with_results_for(out, job_ids):
    import hashlib

    rows = {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}
    for job_id in job_ids:
        assert hashlib.sha256((out / f"{job_id}.mp4").read_bytes()).hexdigest() == rows[job_id]["sha256"]
    assert [p for p in out.rglob("*") if ".partial" in p.name] == []


def test_weights_no_replica_can_load_stop_the_run_as_fatal_with_no_failed_row_per_job(ray_local, tmp_path):
    from ltx_ray.errors import ReplicaStartFailed, RunFatal

    write_manifest([{"job_id": f"j{i}", "prompt": "p", "width": 64, "height": 64, "num_frames": 9} for i in range(3)],
                   str(tmp_path / "m.parquet"))
    config = RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(tmp_path / "out"), engine="tests.faults:UnloadableEngine")
    with pytest.raises(ReplicaStartFailed, match="no replica could start .*ModelNotFound: .*is truncated") as info:
        run(config, log=lambda *_: None)
    assert isinstance(info.value, RunFatal)  # what the CLI prints in one line and exits 2 for
    assert not (tmp_path / "out" / "results").exists()  # nothing was tried, so no row says it failed
