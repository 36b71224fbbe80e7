"""A replica of several ranks (``--gpus-per-replica N --parallel MODE``) and runs that mix pools
routed by size (``--pool``), on the session's Ray with CPU ranks (gloo): the same commands a
GPU cluster runs, with ``--device cpu``."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.cli import main as cli_main
from ltx_ray.storage.manifest import write_manifest
from ltx_ray.storage.mux import probe
from tests.test_faults import assert_outputs_agree_with_results

pytestmark = pytest.mark.e2e

TINY = {"width": 64, "height": 64, "num_frames": 9}  # 36,864 pixels: pool small
BIG = {"width": 128, "height": 96, "num_frames": 17}  # 208,896 pixels: pool big (min_pixels=128x96x17)


@pytest.fixture(scope="module")
def pooled_run(ray_local, tmp_path_factory):
    """Two pools: one rank for small rows, a group of two ranks for big ones; rank 1 of the
    group dies on its first job (the noise stand-in engine, so only the scheduling is timed)."""
    tmp = tmp_path_factory.mktemp("pools")
    rows = [{"job_id": f"small{i}", "prompt": "p", **TINY} for i in range(2)]
    rows += [{"job_id": f"big{i}", "prompt": "p", **BIG} for i in range(2)]
    rows[2]["metadata"] = json.dumps({"kill_rank": 1, "kill_marker": str(tmp / "killed")})
    write_manifest(rows, str(tmp / "m.parquet"))
    lines: list[str] = []
    summary = run(RunConfig(
        manifests=[str(tmp / "m.parquet")], out=str(tmp / "out"), engine="tests.faults:RankKillingEngine",
        # Half a CPU each: the session's Ray has two, and Ray Data's reads need one.
        pool=["small:cpus=0.5", "big:gpus=2,cpus=0.5,parallel=ulysses,min_pixels=128x96x17"],
    ), log=lines.append)
    results = {r["job_id"]: r for r in pq.read_table(tmp / "out" / "results").to_pylist()}
    return summary, tmp, results, lines


def test_rows_go_to_the_pool_their_size_names_and_a_group_replica_runs_as_two_ranks(pooled_run):
    summary, tmp, results, lines = pooled_run
    assert (summary.succeeded, summary.failed) == (4, 0)
    assert {j: r["pool"] for j, r in results.items()} == {"small0": "small", "small1": "small", "big0": "big", "big1": "big"}
    assert any(line.startswith("generating on pool big: 1 replica(s) of 2 GPU(s) as 2 ranks (ulysses): 2 job(s)")
               for line in lines), lines
    for job_id, row in results.items():
        sidecar = json.loads((tmp / "out" / f"{job_id}.json").read_text())
        big = row["pool"] == "big"
        assert sidecar["pool"] == row["pool"]
        assert sidecar["generation"]["parallel"] == ({"mode": "ulysses", "ranks": 2} if big else {"mode": "none", "ranks": 1})
        # rank 0 made the file; its group's process group held both ranks; the engine was told the layout
        assert (sidecar["generation"]["rank"], sidecar["generation"]["world"]) == (0, 2 if big else 1)
        assert sidecar["generation"]["engine_parallel"] == ({"mode": "ulysses", "ranks": 2} if big else None)


def test_a_rank_killed_mid_job_rebuilds_the_group_and_the_job_runs_again_once_writing_once(pooled_run):
    _, tmp, results, _ = pooled_run
    assert (tmp / "killed").exists(), "the fault was not injected"
    assert results["big0"]["dispatch_attempts"] == 2  # the broken group wrote nothing; a new group ran it
    assert [results[j]["dispatch_attempts"] for j in ("big1", "small0", "small1")] == [1, 1, 1]  # the rest ran once
    assert_outputs_agree_with_results(tmp / "out", list(results))


def test_two_cpu_ranks_make_the_tiny_models_video_with_sound_through_ltx_ray_run(ray_local, tmp_path):
    rows = [{"job_id": "duo", "prompt": "a red sneaker", "width": 128, "height": 96, "num_frames": 9}]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    out = tmp_path / "out"
    code = cli_main(["run", str(tmp_path / "m.parquet"), "--out", str(out), "--device", "cpu",
                     "--gpus-per-replica", "2", "--parallel", "ulysses"])
    assert code == 0
    table = pq.read_table(out / "results").to_pylist()
    assert [(r["job_id"], r["status"], r["dispatch_attempts"]) for r in table] == [("duo", "succeeded", 1)]
    p = probe(out / "duo.mp4")
    assert (p.video_codec, p.audio_codec, p.width, p.height, p.num_frames) == ("h264", "aac", 128, 96, 9)
    sidecar = json.loads((out / "duo.json").read_text())
    assert sidecar["generation"]["parallel"] == {"mode": "ulysses", "ranks": 2}
    assert sorted(p.name for p in out.glob("duo*")) == ["duo.jpg", "duo.json", "duo.mp4", "duo.webp"]  # written once


def test_a_serve_replica_of_two_cpu_ranks_completes_a_video_whose_sidecar_names_its_ranks(ray_local, tmp_path):
    from ray import serve

    from ltx_ray.serve.config import ServeArgs
    from tests.conftest import shutdown_serve
    from tests.test_serve import KEY, Endpoint, free_port, start_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # The noise stand-in: the tiny model's two ranks are the batch test's; here, Serve's wiring.
    args = ServeArgs(store=str(tmp_path / "store"), api_keys=[KEY], api_keys_env=None, torch_threads=1,
                     gpus_per_replica=2, parallel="ulysses", engine="tests.faults:RankKillingEngine")
    try:
        start_app(args)
        client = Endpoint(port, tmp_path / "store", args).client()
        video = client.videos.create_and_poll(prompt="a red sneaker", size="128x96", extra_body={"num_frames": 9},
                                              poll_interval_ms=50)
        assert (video.status, video.error) == ("completed", None)
        mp4 = probe(client.videos.download_content(video.id).read())
        assert (mp4.video_codec, mp4.audio_codec, mp4.width, mp4.height, mp4.num_frames) == ("h264", "aac", 128, 96, 9)
        sidecar = json.loads((tmp_path / "store" / "videos" / f"{video.id}.json").read_text())
        assert sidecar["generation"]["parallel"] == {"mode": "ulysses", "ranks": 2}
        assert (sidecar["generation"]["rank"], sidecar["generation"]["world"]) == (0, 2)  # one group of two
    finally:
        shutdown_serve()  # Serve's actors would otherwise hold the shared cluster's CPUs


class FakeRank:
    """Ranks 1..N-1 without a model: each job names how this rank ends it."""

    def generate(self, job, inputs):
        import time

        if job == "slow":
            time.sleep(5)
        if job in ("bad input", "hung peer"):
            raise (ValueError("bad input") if job == "bad input" else RuntimeError("timed out in a collective"))
        return 0.0


class FakeLead:
    """Rank 0's own engine: a clip, or the error a bad input gives on every rank."""

    placement = None

    def generate(self, job, inputs, on_step=None):
        if job in ("bad input", "hung peer"):
            raise ValueError("bad input")
        return "clip"


def test_a_group_is_in_step_only_when_every_rank_ends_a_call_alike(ray_local):
    import ray

    from ltx_ray.errors import ReplicaFatal
    from ltx_ray.replica.group import GroupEngine
    from ltx_ray.schema.parallel import Parallel

    peer = ray.remote(FakeRank).options(num_cpus=0).remote()
    group = GroupEngine(FakeLead(), [peer], Parallel(mode="ulysses", ranks=2), timeout_s=2)
    assert group.generate("ok", None) == "clip"
    with pytest.raises(ValueError, match="bad input"):  # every rank failed alike: the job's error, a row error
        group.generate("bad input", None)
    with pytest.raises(ReplicaFatal, match="rank 1 of 2 failed otherwise than rank 0 .*timed out in a collective"):
        group.generate("hung peer", None)  # rank 0 stopped early, its peer was left waiting: rebuild
    with pytest.raises(ReplicaFatal, match=r"rank\(s\) \[1\] of 2 did not end the call within 2 s"):
        group.generate("slow", None)
    ray.kill(peer)
    with pytest.raises(ReplicaFatal, match="rank 1 of 2 died"):
        group.generate("ok", None)
