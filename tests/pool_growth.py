"""An autoscaling pool on a live cluster, run as a script by tests/test_pool.py: a node joins mid-run.

    python -m tests.pool_growth OUT

Starts a one-node Ray cluster in this process (``ray.cluster_utils.Cluster``) whose head
has room for one replica (one ``sim_gpu``), runs ``--replicas 1:3`` over a manifest of
short simulated jobs, and adds a node with two more ``sim_gpu`` as soon as the first job has
finished. Prints the run summary (JSON), the added node's id and the head's, one per line.

The replicas are ``HeldOnTheFirstNode``, a stand-in job runner named for what it does: it
sleeps like ``bench.sim_engine.SimulatedJobRunner``, and a job on the head node, after the
head's first, waits until a job has started on another node (until 60 s after the head's
first job at most). Without that the head's one replica could finish every job while the
new node is still starting on a busy machine. A pool that does not grow never starts a job elsewhere: the jobs then run
late, all on the head, and the test fails on where they ran.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from bench.sim_engine import SimulatedJobRunner

HOLD_S = 60


class HeldOnTheFirstNode(SimulatedJobRunner):
    """Stand-in runner: records the node of each job it starts; holds the head's jobs until a job starts elsewhere."""

    def run(self, job, on_step=None):
        starts = Path(job.metadata["starts"])
        head = job.metadata["head"]
        (starts / f"{self.node_id}.{job.job_id}").touch()
        on_head = list(starts.glob(f"{head}.*"))
        if self.node_id == head and len(on_head) > 1:
            # One deadline for the whole run, from the head's first job: a pool that never
            # grows fails the test in a minute, not a minute per job.
            deadline = min(p.stat().st_mtime for p in on_head) + HOLD_S
            while time.time() < deadline and not [p for p in starts.iterdir() if not p.name.startswith(head)]:
                time.sleep(0.1)
        return super().run(job, on_step)


def main(out: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from ltx_ray.batch.run import RunConfig, run
    from ltx_ray.storage.manifest import write_manifest

    root = Path(out)
    starts = root.parent / "starts"
    starts.mkdir(parents=True)
    # The head: CPUs for Ray Data's own tasks, and room for one replica. No dashboard: it
    # only costs seconds of start-up here.
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "resources": {"sim_gpu": 1}, "include_dashboard": False})
    ray.init(address=cluster.address)
    head = cluster.head_node.node_id
    meta = json.dumps({"sim_seconds": 0.5, "starts": str(starts), "head": head})
    rows = [{"job_id": f"g{i}", "prompt": f"clip {i}", "width": 64, "height": 64, "num_frames": 9, "metadata": meta}
            for i in range(8)]
    write_manifest(rows, str(root.parent / "m.parquet"))
    outcome: dict = {}

    def generate():
        try:
            outcome["summary"] = run(
                RunConfig(manifests=[str(root.parent / "m.parquet")], out=out, replicas="1:3",
                          runner="tests.pool_growth:HeldOnTheFirstNode", resources_per_replica={"sim_gpu": 1},
                          cpus_per_replica=0.25),
                log=lambda line: print("LOG", line, flush=True),
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            outcome["error"] = exc

    # The run goes on in a thread: starting a node needs the main thread (signal handlers).
    runner = threading.Thread(target=generate, daemon=True)
    runner.start()
    added = ""
    try:
        results = root / "results"
        while runner.is_alive() and not (results.exists() and any(results.glob("*.parquet"))):
            time.sleep(0.2)
        if runner.is_alive():
            added = cluster.add_node(num_cpus=2, resources={"sim_gpu": 2}).node_id
        runner.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]
    print("SUMMARY", summary.model_dump_json())
    print("ADDED", added)
    print("HEAD", head)


if __name__ == "__main__":
    main(sys.argv[1])
