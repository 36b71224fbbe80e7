"""Rows fan out one per task over a fixed pool of GPU replicas (fake GPUs, CPU device)."""

from __future__ import annotations

import pyarrow.parquet as pq

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.storage.manifest import write_manifest


def test_a_small_manifest_is_spread_over_every_gpu_replica(ray_local, tmp_path):
    from tests.scrape import key, scrape, wait_for_increase

    before = scrape()
    # Six rows fit one Parquet block; without repartitioning one replica would get them all.
    rows = [{"job_id": f"r{i}", "prompt": f"clip {i}", "width": 256, "height": 160, "num_frames": 9} for i in range(6)]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    summary = run(
        RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(tmp_path / "out"), replicas=2,
                  gpus_per_replica=1, cpus_per_replica=0.5),
        log=lambda *_: None,
    )
    assert summary.succeeded == 6
    table = pq.read_table(tmp_path / "out" / "results").to_pylist()
    workers = {r["worker"] for r in table}
    assert len(workers) == 2, workers
    assert summary.gpu_seconds > 0  # generate time counted per GPU of each replica
    # ... and exported on Ray's metrics endpoint by the replicas, as the summary counts it.
    wanted = {key("ray_ltx_ray_gpu_seconds_total", task="t2v"): summary.gpu_seconds - 0.01,
              key("ray_ltx_ray_jobs_total", status="succeeded", task="t2v"): 6}
    deltas = wait_for_increase(before, wanted)
    assert all(deltas[k] >= want for k, want in wanted.items()), deltas
