"""Every benchmark runs on a tiny setting and ends with one well-formed JSON line.

These are not timed tests: the numbers are whatever this machine gives; what is checked is
that each benchmark runs its real path to the end and reports what its README entry says.
Benchmarks whose Ray workers import ``bench`` run in a fresh process with its own local Ray
(one for the three of them); the others run in this process. ``bench/gpu.py`` is tested in
tests/test_gpu.py, beside the GPU smoke tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


# The benchmarks whose Ray workers import ``bench`` (the simulated runners), as a user runs
# them, but in one process and one local Ray (with the union of their resources: 3 simulated
# GPUs, 7 CPUs) instead of a Ray each: each main() then leaves that Ray up for the next.
SIMULATED = {
    "fleet": ["--gpus", "3", "--jobs", "12", "--target-s", "1"],
    "capacity": ["--jobs", "10", "--replicas", "2", "--engine-jobs", "2"],
    "scale": ["--rows", "16", "--replicas", "2", "--target-s", "1"],
}
DRIVER = f"""
import sys
from bench.common import start_ray
start_ray(num_cpus=7, resources={{"sim_gpu": 3}})
from bench import capacity, fleet, scale
for name, argv in {SIMULATED!r}.items():
    getattr(sys.modules["bench." + name], "main")(argv + ["--json"])
"""


@pytest.fixture(scope="module")
def simulated() -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"bench": ')]
    return {r["bench"]: r for r in reports}


def last_json_line(stdout: str) -> dict:
    result = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_fleet_reports_utilization_makespan_ratio_and_tail_of_a_simulated_fleet(simulated):
    r = simulated["fleet"]
    assert r["bench"] == "fleet" and r["succeeded"] == 12 and r["gpus"] == 3
    assert r["actors_used"] == 3
    assert 0 < r["utilization"] <= 1.0
    assert r["makespan_ratio"] >= 1.0 and r["tail_s"] >= 0
    assert r["schedule_model"]["longest_first_makespan_ratio"] <= r["schedule_model"]["shortest_first_makespan_ratio"]


def test_capacity_reports_rows_per_second_per_head_core_for_null_work(simulated):
    r = simulated["capacity"]
    assert r["bench"] == "capacity" and r["null_runner"]["succeeded"] == 10
    assert r["rows_per_s"] > 0 and r["rows_per_s_per_core"] == pytest.approx(r["rows_per_s"] / r["head_cores"], rel=0.01)
    assert r["null_engine_full_jobrunner"]["succeeded"] == 2


def test_scale_validates_runs_and_reruns_a_manifest_generating_nothing_the_second_time(simulated):
    r = simulated["scale"]
    assert r["bench"] == "scale" and r["succeeded"] == 16
    assert r["rerun_generated"] == 0
    assert r["validate_cli_s"] > 0 and r["rerun_cli_s"] > 0 and r["driver_rss_growth"] > 0


def test_memory_reports_per_job_peaks_and_growth_of_one_worker(capsys):
    from bench import memory

    memory.main(["--jobs", "3", "--json", "--chain-size", "320x192x49"])
    r = last_json_line(capsys.readouterr().out)
    assert r["bench"] == "memory" and r["jobs"] == 3 and r["failed"] == []
    assert len(r["peak_rss_mb_per_job"]) == 3 and r["growth"] > 0
    # 4 segments of 49 frames sharing 9 at each join: 169 frames of 320x192x3 bytes.
    assert r["chain_frames"] == 169 and r["chain_final_mb"] == round(169 * 320 * 192 * 3 / 2**20, 1)
    assert r["chain_peak_mb"] < r["chain_concatenated_peak_mb"]  # written once vs copied at every join


def test_memory_size_mode_reports_the_peak_over_the_frames_and_where_it_is(capsys):
    from bench import memory

    memory.main(["--size", "256x160x33", "--json"])
    r = last_json_line(capsys.readouterr().out)
    assert r["jobs"] == 1 and r["failed"] == [] and r["frame_mb"] == round(256 * 160 * 33 * 3 / 2**20, 1)
    assert r["peak_rss_mb"] > r["rss_mb_after_model"]
    assert r["peak_rss_over_frames"] == max(r["phase_peak_over_frames"].values())
    assert {"denoise", "decode_video", "mux"} <= set(r["phase_peak_over_frames"])
    assert r["vae_tiling"] == [False]  # 4 MB of frames: one decode call


def test_overhead_compares_a_bare_diffusers_loop_with_ltx_ray_side_by_side(ray_local, capsys):
    from bench import overhead

    overhead.main(["--jobs", "2", "--rounds", "1", "--width", "128", "--height", "96", "--num-frames", "9", "--json"])
    r = last_json_line(capsys.readouterr().out)
    assert r["bench"] == "overhead"
    for key in ("bare_s_per_job", "ltx_ray_s_per_job", "ltx_ray_overlap_s_per_job", "bare_startup_s", "ltx_ray_startup_s"):
        assert r[key] > 0, key
    assert r["ratio"] == pytest.approx(r["ltx_ray_s_per_job"] / r["bare_s_per_job"], rel=0.01)


def test_a_guided_job_costs_four_passes_per_step_so_longest_first_counts_guidance():
    from ltx_ray.schema.manifest import ManifestRow
    from ltx_ray.schema.profiles import ModelProfile

    def job(steps, guidance):
        return ManifestRow(job_id="j", prompt="p", steps=steps, guidance_scale=guidance).resolve(ModelProfile())

    # A guided LTX-2.0 step: conditional + CFG + STG + modality passes; guidance_scale 1: one pass.
    assert job(40, 3.0).transformer_passes == 4 and job(8, 1.0).transformer_passes == 1
    assert job(40, 3.0).denoise_cost == 20 * job(8, 1.0).denoise_cost


def test_two_jobs_in_flight_only_where_replicas_have_many_jobs_because_few_jobs_queue_behind_long_ones():
    from bench.fleet import list_schedule, two_in_flight_schedule
    from ltx_ray.batch.run import auto_tasks_in_flight

    # 2 GPUs, longest first: one in flight puts the three short jobs on the free GPU.
    assert list_schedule([5, 1, 1, 1], 2) == 5
    assert two_in_flight_schedule([5, 1, 1, 1], 2) == 6
    assert auto_tasks_in_flight(31, 2) == 1 and auto_tasks_in_flight(32, 2) == 2


def test_the_parallel_benchmark_reports_each_clip_on_one_and_two_ranks_with_speedup_and_efficiency(model_cache):
    """bench/gpu_parallel.py's CPU path: the tiny model on 1 and 2 gloo ranks (Ulysses), as it
    runs on 1, 2 and 4 cards of a GPU machine; the figures are this machine's, not asserted."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "bench/gpu_parallel.py", "--device", "cpu", "--steps", "2", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = last_json_line(proc.stdout)
    assert (r["bench"], r["model"], r["not_run"]) == ("gpu_parallel", "tiny", [])
    assert set(r["clips"]) == {"256x160x17", "256x192x9 two-stage"}
    for row in r["clips"].values():
        assert set(row) == {"1:none", "2:ulysses"}
        assert row["1:none"]["speedup"] == 1.0
        two = row["2:ulysses"]
        assert two["s_per_clip"] > 0 and two["efficiency"] == round(two["speedup"] / 2, 3)
