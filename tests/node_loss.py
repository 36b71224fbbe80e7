"""Fault injection, run as a script by tests/test_faults.py: remove a node of a live cluster mid-run.

    python -m tests.node_loss MANIFEST OUT

Starts a three-node Ray cluster in this process (``ray.cluster_utils.Cluster``: a head and
two workers on one machine), runs the manifest with two replicas, and removes one worker
node as soon as the first job has finished. Prints the run summary as JSON.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from ltx_ray.batch.run import RunConfig, run


# The GCS declares a silent node dead after failure_threshold x period (Ray's defaults: 5 x 3 s
# after a 5 s initial delay). A removed node is detected the same way, only sooner.
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
                   "health_check_failure_threshold": 3}


def main(manifest: str, out: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": FAST_NODE_DEATH})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    removed: list[str] = []

    def remove_a_node_after_the_first_job():
        results = Path(out) / "results"
        while not (results.exists() and any(results.glob("*.parquet"))):
            time.sleep(0.2)
        removed.append(workers[1].node_id)
        cluster.remove_node(workers[1], allow_graceful=False)

    killer = threading.Thread(target=remove_a_node_after_the_first_job, daemon=True)
    killer.start()
    try:
        summary = run(RunConfig(manifests=[manifest], out=out, replicas=2), log=lambda *_: None)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("SUMMARY", summary.model_dump_json())
    print("REMOVED", removed[0] if removed else "")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
