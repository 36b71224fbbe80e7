"""The QC gate inside JobRunner.run: retry with new seeds, every attempt recorded, rejects kept apart."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from ltx_ray.engine.types import Clip
from ltx_ray.job.runner import JobRunner, attempt_seeds
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.qc import QCConfig
from ltx_ray.storage.mux import probe
from ltx_ray.storage.results import read_results
from ltx_ray.storage.store import OutputStore

SMALL = {"width": 256, "height": 160, "num_frames": 17}
# The tiny model's noise moves a lot, is never blank and is loud: these thresholds it passes...
NOISE_PASSES = {"min_motion": 1.0, "max_blank_fraction": 0.0, "min_audio_dbfs": -60, "min_keyframe_ssim": -1.0}
# ...and no noise can be this still, so every attempt fails.
NOISE_FAILS = {"min_motion": 250.0, "max_attempts": 2}


def make_job(tiny_model, **fields):
    return ManifestRow(prompt="a red sneaker", **SMALL, **fields).resolve(tiny_model.profile)


def runner(engine, tiny_model, out):
    return JobRunner(engine, OutputStore(str(out)), tiny_model, device="cpu", dtype="float32", run_id="r1")


def test_a_video_passing_qc_is_accepted_on_the_first_attempt_with_its_scores(engine, tiny_model, tmp_path, images):
    job = make_job(tiny_model, job_id="ok", image_uri=str(images["red"]), qc=json.dumps(NOISE_PASSES))
    row = runner(engine, tiny_model, tmp_path).run(job)
    assert row.status == "succeeded" and row.attempts == 1
    assert row.qc["passed"] is True and [a["seed"] for a in row.qc["attempts"]] == [job.seed]
    checks = row.qc["attempts"][0]["checks"]
    assert set(checks) == {"motion", "blank_fraction", "audio_dbfs", "keyframe@0"}  # i2v: frame 0 vs its image
    assert checks["motion"]["score"] > 1.0 and checks["audio_dbfs"]["pass"] is True
    assert (tmp_path / "ok.mp4").exists() and (tmp_path / "ok.webp").exists()
    assert "qc" in row.timings


def test_a_video_failing_qc_is_regenerated_with_new_seeds_then_rejected(engine, tiny_model, tmp_path):
    job = make_job(tiny_model, job_id="frozen-never", qc=json.dumps(NOISE_FAILS))
    row = runner(engine, tiny_model, tmp_path).run(job)
    assert row.status == "failed" and row.error_stage == "qc" and row.attempts == 2
    seeds = [a["seed"] for a in row.qc["attempts"]]
    assert seeds == attempt_seeds(job) and len(set(seeds)) == 2 and seeds[0] == job.seed
    assert all(a["checks"]["motion"]["pass"] is False for a in row.qc["attempts"])
    assert "motion" in row.error and "2 attempt" in row.error
    # the rejected video is kept for review, never under the accepted name
    assert not (tmp_path / "frozen-never.mp4").exists()
    assert probe(tmp_path / "rejected" / "frozen-never.mp4").num_frames == 17
    stored = read_results(OutputStore(str(tmp_path))).to_pylist()[0]
    assert stored["attempts"] == 2 and json.loads(stored["qc"])["attempts"][1]["seed"] == seeds[1]
    sidecar = json.loads((tmp_path / "frozen-never.json").read_text())
    assert sidecar["qc"]["passed"] is False and sidecar["job"]["seed"] == seeds[1] == row.seed


class FrozenThenMovingEngine:
    """Fake engine for the retry orchestration: its first seed gives a frozen clip, any other a moving one."""

    placement = None  # a fake places no model

    def __init__(self, first_seed: int):
        self.first_seed = first_seed
        self.seeds: list[int] = []

    def generate(self, job, inputs, on_step=None) -> Clip:
        self.seeds.append(job.seed)
        rng = np.random.default_rng(job.seed)
        still = rng.integers(0, 256, (job.height, job.width, 3), dtype=np.uint8)
        frames = np.stack([still if job.seed == self.first_seed else rng.integers(0, 256, still.shape, dtype=np.uint8)
                           for _ in range(job.num_frames)])
        audio = (0.1 * rng.standard_normal((2, int(job.num_frames / job.fps * 24000)))).astype(np.float32)
        return Clip(frames=frames, fps=job.fps, audio=audio, sample_rate=24000)


def test_a_retry_that_passes_is_accepted_and_keeps_the_failed_attempts_scores(tiny_model, tmp_path):
    job = make_job(tiny_model, job_id="second-time", qc=json.dumps({"min_motion": 5.0}))
    fake = FrozenThenMovingEngine(first_seed=job.seed)
    row = runner(fake, tiny_model, tmp_path).run(job)
    assert row.status == "succeeded" and row.attempts == 2 and fake.seeds == attempt_seeds(job)[:2]
    assert [a["pass"] for a in row.qc["attempts"]] == [False, True]
    assert row.seed == fake.seeds[1] and (tmp_path / "second-time.mp4").exists()


def test_without_a_qc_config_nothing_is_checked_and_the_job_runs_once(tiny_model, tmp_path):
    job = make_job(tiny_model, job_id="plain")
    fake = FrozenThenMovingEngine(first_seed=job.seed)  # frozen, and nobody looks
    row = runner(fake, tiny_model, tmp_path).run(job)
    assert row.status == "succeeded" and row.qc is None and row.attempts == 1 and fake.seeds == [job.seed]
    assert pq.read_table(tmp_path / "results").column("qc").to_pylist() == [None]


def test_a_manifest_qc_cell_that_is_not_json_names_the_field():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="qc"):
        ManifestRow(job_id="a", prompt="p", qc="{min_motion: 1}")
    assert ManifestRow(job_id="a", prompt="p", qc="{}").qc == QCConfig()


def test_a_keyframe_job_is_checked_at_the_frames_where_its_images_landed(engine, tiny_model, tmp_path, images):
    keyframes = [{"uri": str(images["red"]), "frame": 0}, {"uri": str(images["blue"]), "frame": 12}]
    job = make_job(tiny_model, job_id="kf", keyframes=keyframes, qc=json.dumps(NOISE_PASSES))
    row = runner(engine, tiny_model, tmp_path).run(job)
    checks = row.qc["attempts"][0]["checks"]
    # frame 12 is placed at frame 12 (not on the latent grid's 9), and that is the frame compared
    assert {"keyframe@0", "keyframe@12"} <= set(checks) and row.status == "succeeded"
    assert -1 <= checks["keyframe@12"]["score"] < 0.5  # noise does not look like the photo
