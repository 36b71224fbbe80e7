"""End to end through real Ray Data and the real diffusers pipelines on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.cli import main as cli_main
from ltx_ray.storage.manifest import write_manifest
from ltx_ray.storage.mux import decode_frames, probe
from tests.conftest import REPO

# Runs through Ray with the tiny model, some as `ltx-ray` subprocesses with their own Ray.
pytestmark = pytest.mark.e2e

SMALL = {"width": 256, "height": 160, "num_frames": 17}


@pytest.fixture(scope="module")
def metrics_before(ray_local):
    """The cluster's metrics before mixed_run (other modules' runs counted too)."""
    from tests.scrape import scrape

    return scrape()


@pytest.fixture(scope="module")
def mixed_run(ray_local, tmp_path_factory, metrics_before):
    """One run over every task, a bad input, an invalid row and a determinism twin."""
    from tests.conftest import draw_image

    tmp = tmp_path_factory.mktemp("mixed")
    red = draw_image(tmp / "red.png")
    green = draw_image(tmp / "green.png", color=(30, 160, 60))
    rows = [
        {"job_id": "t2v", "prompt": "a red sneaker on a table", **SMALL, "metadata": json.dumps({"sku": "S1"}), "x_campaign": "spring"},
        {"job_id": "t2v-twin", "prompt": "a red sneaker on a table", **SMALL, "seed": None},
        {"job_id": "i2v", "prompt": "the sneaker turns", "image_uri": str(red), **SMALL, "seed": 5},
        {"job_id": "i2v-green", "prompt": "the sneaker turns", "image_uri": str(green), **SMALL, "seed": 5},
        {"job_id": "kf", "prompt": "a turn", "width": 256, "height": 160, "num_frames": 25,
         "keyframes": [{"uri": str(red), "frame": 0, "strength": 1.0}, {"uri": str(green), "frame": 24, "strength": 0.8}]},
        {"job_id": "silent", "prompt": "a watch", **SMALL, "audio": False},
        {"job_id": "missing-image", "prompt": "p", "image_uri": str(tmp / "nope.png"), **SMALL},
        {"job_id": "bad-width", "prompt": "p", "width": 250, "height": 160, "num_frames": 17},
    ]
    # the twin must share t2v's seed to prove determinism: same job, same video
    from ltx_ray.schema.fields import stable_seed

    rows[1]["seed"] = stable_seed("t2v")
    write_manifest(rows, str(tmp / "m.parquet"))
    out = tmp / "out"
    summary = run(RunConfig(manifests=[str(tmp / "m.parquet")], out=str(out)), log=lambda *_: None)
    table = pq.read_table(out / "results")
    return summary, out, {r["job_id"]: r for r in table.to_pylist()}, table


def test_every_row_gets_exactly_one_results_row(mixed_run):
    summary, _, results, table = mixed_run
    assert table.num_rows == 8
    assert set(results) == {"t2v", "t2v-twin", "i2v", "i2v-green", "kf", "silent", "missing-image", "bad-width"}
    assert (summary.succeeded, summary.failed, summary.invalid) == (6, 1, 1)
    assert summary.exit_code == 1
    assert all(r["node_id"] for r in results.values() if r["error_stage"] != "validate")


@pytest.mark.parametrize("job_id", ["t2v", "i2v", "kf"])
def test_each_task_writes_an_mp4_with_synced_audio_a_sidecar_and_a_thumbnail(mixed_run, job_id):
    _, out, results, _ = mixed_run
    row = results[job_id]
    assert row["status"] == "succeeded" and row["error"] is None
    p = probe(out / f"{job_id}.mp4")
    frames = 25 if job_id == "kf" else 17
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (p.width, p.height, p.num_frames, p.fps) == (256, 160, frames, 24.0)
    assert p.audio_channels == 2 and p.audio_sample_rate == 24000
    assert abs(p.audio_duration_s - frames / 24) < 1 / 24
    assert p.metadata["ai_generated"] == "true" and p.metadata["ltx_ray_job_id"] == job_id
    sidecar = json.loads((out / f"{job_id}.json").read_text())
    assert sidecar["outputs"]["sha256"] == row["sha256"]
    import hashlib

    assert hashlib.sha256((out / f"{job_id}.mp4").read_bytes()).hexdigest() == row["sha256"]
    assert sidecar["job"]["seed"] == row["seed"] and sidecar["versions"]["diffusers"].startswith("0.42")
    assert {"fetch_inputs", "generate", "mux", "upload"} <= set(sidecar["timings"])
    assert (out / f"{job_id}.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert row["duration_s"] == pytest.approx(frames / 24)


def test_keyframes_landing_frames_are_recorded(mixed_run):
    _, out, _, _ = mixed_run
    landed = json.loads((out / "kf.json").read_text())["keyframes_landed"]
    assert [(k["frame"], k["effective_frame"]) for k in landed] == [(0, 0), (24, 24)]


def test_the_input_image_steers_the_video(mixed_run):
    # Random weights cannot reproduce the picture, but the picture must reach the model:
    # the same job with another image gives another video.
    _, out, _, _ = mixed_run
    red, green = decode_frames(out / "i2v.mp4"), decode_frames(out / "i2v-green.mp4")
    assert red.shape == green.shape
    assert abs(red[0].astype(int) - green[0].astype(int)).mean() > 1


def test_audio_false_writes_a_video_only_mp4(mixed_run):
    _, out, results, _ = mixed_run
    assert probe(out / "silent.mp4").audio_codec is None
    assert results["silent"]["audio_sample_rate"] is None


def test_same_job_twice_gives_identical_frames(mixed_run):
    _, out, _, _ = mixed_run
    a, b = decode_frames(out / "t2v.mp4"), decode_frames(out / "t2v-twin.mp4")
    assert a.shape == b.shape and (a == b).all()


def test_a_bad_input_fails_its_row_with_the_field_and_value(mixed_run):
    _, out, results, _ = mixed_run
    row = results["missing-image"]
    assert row["status"] == "failed" and row["error_stage"] == "fetch_inputs"
    assert "image_uri" in row["error"] and "nope.png" in row["error"] and "no such file" in row["error"]
    assert not (out / "missing-image.mp4").exists()


def test_an_invalid_row_fails_at_validation_without_stopping_the_run(mixed_run):
    _, _, results, _ = mixed_run
    row = results["bad-width"]
    assert row["status"] == "failed" and row["error_stage"] == "validate"
    assert "width = 250" in row["error"] and "multiple of 32" in row["error"]


def test_the_metrics_endpoint_counts_the_jobs_by_status_and_failing_stage_and_their_generation_seconds(
        mixed_run, metrics_before):
    from tests.scrape import key, wait_for_increase

    _, _, results, _ = mixed_run
    generated = sum(dict(r["timings"] or []).get("generate", 0) > 0 for r in results.values())
    wanted = {
        key("ray_ltx_ray_jobs_total", status="succeeded", error_stage=""): 6,
        key("ray_ltx_ray_jobs_total", status="succeeded", error_stage="", task="i2v"): 2,
        key("ray_ltx_ray_jobs_total", status="failed", error_stage="fetch_inputs"): 1,
        key("ray_ltx_ray_jobs_total", status="failed", error_stage="validate"): 1,  # counted by the driver
        key("ray_ltx_ray_generation_seconds_count"): generated,
        # (Ray's agent rebuilds a histogram's _sum from bucket midpoints: no exact total to check.)
        key("ray_ltx_ray_generation_seconds_bucket", le="+Inf"): generated,
    }
    deltas = wait_for_increase(metrics_before, wanted)
    assert all(deltas[k] >= want for k, want in wanted.items()), deltas
    assert generated == 6  # the six videos, not the failed row that never reached the model


def test_metadata_and_x_columns_reach_the_results(mixed_run):
    _, _, results, _ = mixed_run
    assert json.loads(results["t2v"]["metadata"]) == {"sku": "S1"}
    assert json.loads(results["t2v"]["passthrough"]) == {"x_campaign": "spring"}


def test_no_partial_files_are_left_in_the_output(mixed_run):
    _, out, _, _ = mixed_run
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name or p.name.startswith(".ltx-ray-write-probe")]
    assert leftovers == []


def test_a_rerun_regenerates_nothing_and_force_regenerates(ray_local, tmp_path):
    write_manifest([{"job_id": "once", "prompt": "p", **SMALL}], str(tmp_path / "m.parquet"))
    cfg = RunConfig(manifests=[str(tmp_path / "m.parquet")], out=str(tmp_path / "out"))
    first = run(cfg, log=lambda *_: None)
    mtime = (tmp_path / "out" / "once.mp4").stat().st_mtime_ns
    second = run(cfg, log=lambda *_: None)
    assert (first.succeeded, second.succeeded, second.skipped) == (1, 0, 1)
    assert (tmp_path / "out" / "once.mp4").stat().st_mtime_ns == mtime
    assert pq.read_table(tmp_path / "out" / "results").num_rows == 1
    # a changed row is a new job, and the run says what changed
    write_manifest([{"job_id": "once", "prompt": "another prompt", **SMALL}], str(tmp_path / "m.parquet"))
    lines = []
    third = run(cfg, log=lines.append)
    assert third.succeeded == 1
    assert third.recipe_changes == {"once": ['prompt: "p" -> "another prompt"']}
    assert any(line.startswith("regenerating once, finished before with another recipe: prompt:") for line in lines)
    assert run(cfg.model_copy(update={"force": True}), log=lambda *_: None).succeeded == 1


def test_cli_exit_codes(ray_local, tmp_path, capsys):
    write_manifest([{"job_id": "ok", "prompt": "p", **SMALL}], str(tmp_path / "good.parquet"))
    write_manifest([{"job_id": "ok", "prompt": "p", **SMALL}, {"job_id": "bad", "prompt": "p", "num_frames": 10}],
                   str(tmp_path / "mixed.parquet"))
    assert cli_main(["run", str(tmp_path / "good.parquet"), "--out", str(tmp_path / "o1")]) == 0
    # Into the same folder: "ok" is done, so only the invalid row is new, and it makes the exit 1.
    assert cli_main(["run", str(tmp_path / "mixed.parquet"), "--out", str(tmp_path / "o1")]) == 1
    assert cli_main(["run", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o3")]) == 2
    assert cli_main(["run", str(tmp_path / "good.parquet"), "--out", str(tmp_path / "o4"), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "model_index.json" in err
    assert cli_main(["validate", str(tmp_path / "mixed.parquet")]) == 1
    assert "job 'bad': num_frames = 10" in capsys.readouterr().out


def test_the_readme_command_runs_the_demo_from_a_shell(tmp_path):
    """`ltx-ray run manifests/demo.parquet --out ...` as a user types it: its own local Ray, exit 0."""
    env = {**os.environ, "LTX_RAY_CACHE": os.environ["LTX_RAY_CACHE"]}
    env.pop("RAY_ADDRESS", None)
    manifest = tmp_path / "demo.parquet"
    # the demo, shrunk so the test stays quick; images resolve relative to the manifest
    import pyarrow.parquet as pq2

    rows = pq2.read_table(REPO / "manifests" / "demo.parquet").to_pylist()
    for row in rows:
        row.update(width=256, height=256, seconds=None, num_frames=17)
        if row.get("keyframes"):
            row["keyframes"] = [dict(k, frame=min(k["frame"], 16)) for k in row["keyframes"]][:2]
        if row.get("image_uri"):
            row["image_uri"] = str(REPO / "manifests" / row["image_uri"])
        if row.get("keyframes"):
            row["keyframes"] = [dict(k, uri=str(REPO / "manifests" / k["uri"])) for k in row["keyframes"]]
    write_manifest(rows, str(manifest))
    proc = subprocess.run(
        [sys.executable, "-m", "ltx_ray.cli", "run", str(manifest), "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "noise" in proc.stdout  # the one-line notice about the tiny model
    assert len(list((tmp_path / "out").glob("*.mp4"))) == len(rows)


def test_a_repeated_job_id_never_overwrites_the_finished_job(ray_local, tmp_path):
    write_manifest([{"job_id": "hero", "prompt": "p", **SMALL}], str(tmp_path / "a.parquet"))
    write_manifest([{"job_id": "hero", "prompt": "another", **SMALL}], str(tmp_path / "b.parquet"))
    out = str(tmp_path / "out")
    assert run(RunConfig(manifests=[str(tmp_path / "a.parquet")], out=out), log=lambda *_: None).succeeded == 1
    second = run(RunConfig(manifests=[str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], out=out),
                 log=lambda *_: None)
    assert (second.skipped, second.invalid, second.exit_code) == (1, 1, 1)
    rows = pq.read_table(tmp_path / "out" / "results").to_pylist()
    assert sorted(r["status"] for r in rows if r["job_id"] == "hero") == ["failed", "succeeded"]
    assert any("duplicate job_id" in (r["error"] or "") for r in rows)
