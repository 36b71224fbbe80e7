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
