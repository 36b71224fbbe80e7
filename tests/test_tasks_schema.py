"""Manifest rules of the LTX-2 tasks: inference, contradictions, presets and their overrides."""

from __future__ import annotations

from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.storage.manifest import load_and_validate, write_manifest

DEFAULTS = ModelProfile(steps=4)


def validate(tmp_path, rows):
    write_manifest(rows, str(tmp_path / "m.parquet"))
    result = load_and_validate([str(tmp_path / "m.parquet")], DEFAULTS)
    problems = {}
    for p in result.problems:
        problems.setdefault(p.job_id, []).append(f"{p.field}: {p.message}")
    return {j.job_id: j for j in result.jobs}, problems


def test_each_task_is_inferred_from_its_input_and_extend_must_be_named(tmp_path):
    jobs, problems = validate(tmp_path, [
        {"job_id": "v", "prompt": "p", "video_uri": "clip.mp4"},
        {"job_id": "e", "prompt": "p", "video_uri": "clip.mp4", "task": "extend"},
        {"job_id": "a", "prompt": "p", "audio_uri": "song.wav"},
        {"job_id": "c", "prompt": "p", "control": "pose", "control_uri": "pose.mp4", "ic_lora": "ic.safetensors"},
    ])
    assert not problems
    assert [jobs[k].task for k in "veac"] == ["v2v", "extend", "a2v", "control"]
    assert jobs["a"].num_frames_from_audio and jobs["v"].strength == 0.6
    assert jobs["v"].video_uri == str(tmp_path / "clip.mp4")  # relative to the manifest


def test_contradicting_or_incomplete_task_rows_are_reported(tmp_path):
    _, problems = validate(tmp_path, [
        {"job_id": "a2v-no-audio", "prompt": "p", "task": "a2v"},
        {"job_id": "two-inputs", "prompt": "p", "image_uri": "a.png", "audio_uri": "b.wav"},
        {"job_id": "control-half", "prompt": "p", "control": "canny", "control_uri": "c.mp4"},
        {"job_id": "strength-t2v", "prompt": "p", "strength": 0.5},
        {"job_id": "bad-control", "prompt": "p", "control": "sketch", "control_uri": "c.mp4", "ic_lora": "x"},
        {"job_id": "pro-odd", "prompt": "p", "preset": "pro", "width": 800},
        {"job_id": "pro-fast", "prompt": "p", "preset": "pro", "fps": 60},
        {"job_id": "long-kf", "prompt": "p", "num_frames": 257, "keyframes": [{"uri": "a.png", "frame": 0, "strength": 1.0}]},
        {"job_id": "bad-lora", "prompt": "p", "loras": [{"uri": "ftp://x/l.safetensors", "scale": 1.0}]},
        {"job_id": "long-v2v", "prompt": "p", "video_uri": "c.mp4", "seconds": 20.0},
    ])
    expect = {
        "a2v-no-audio": "task: the row gives no conditioning input; a a2v job needs audio_uri",
        "two-inputs": "image_uri: is given together with audio_uri",
        "control-half": "ic_lora: a control row needs",
        "strength-t2v": "strength: applies to v2v only",
        "bad-control": "control:",
        "pro-odd": "width: two-stage output must be a multiple of 64",
        "pro-fast": "fps: pro goes up to 48 fps",
        "long-kf": "keyframes: keyframes place frames in one segment",
        "bad-lora": "loras.0.uri",
        "long-v2v": "num_frames: a v2v video is generated in one segment",
    }
    assert set(problems) == set(expect)
    for job_id, text in expect.items():
        assert any(text in p for p in problems[job_id]), (job_id, problems[job_id])


def test_presets_fill_size_fps_and_stages_and_explicit_columns_win(tmp_path):
    jobs, problems = validate(tmp_path, [
        {"job_id": "fast", "prompt": "p", "preset": "fast"},
        {"job_id": "pro", "prompt": "p", "preset": "pro"},
        {"job_id": "ultra", "prompt": "p", "preset": "ultra", "seconds": 10.0},
        {"job_id": "pro-small", "prompt": "p", "preset": "pro", "width": 256, "height": 192, "fps": 48, "two_stage": False},
        {"job_id": "long", "prompt": "p", "seconds": 30.0},
    ])
    assert not problems
    shape = {k: (j.width, j.height, j.fps, j.two_stage) for k, j in jobs.items()}
    assert shape["fast"] == (1280, 704, 24.0, False)
    assert shape["pro"] == (1920, 1088, 24.0, True)
    assert shape["ultra"] == (3840, 2176, 24.0, True)
    assert shape["pro-small"] == (256, 192, 48.0, False)
    assert jobs["ultra"].video_tokens > 250_000  # why stage 2 is refined in tiles
    assert jobs["long"].num_frames == 721 and jobs["long"].num_frames > jobs["long"].segment_frames


def test_a_control_row_runs_the_official_ic_lora_recipe_unless_it_asks_for_its_own_steps_or_guidance():
    from ltx_ray.schema.profiles import PROFILES
    from ltx_ray.schema.schedules import DISTILLED_SIGMAS

    row = {"job_id": "c", "prompt": "p", "control": "depth", "control_uri": "d.mp4", "ic_lora": "ic.safetensors"}
    for name, stage_1_lora in [("ltx-2.0-dev", "ltx-2-19b-distilled-lora-384.safetensors"), ("ltx-2.3-distilled", None),
                               ("ltx-2.5-full", "ltx-2.5-22b-distilled-lora-450-bf16.safetensors")]:
        job = ManifestRow(**row).resolve(PROFILES[name])
        # ic_lora.py: DISTILLED_SIGMAS, one unguided pass a step (SimpleDenoiser), a distilled transformer
        assert (job.steps, job.stages[0].sigmas, job.transformer_passes) == (8, DISTILLED_SIGMAS, 1), name
        assert job.stage_1_lora == stage_1_lora and job.profile == name
    own = ManifestRow(**row, steps=20).resolve(PROFILES["ltx-2.0-dev"])
    assert (own.steps, own.transformer_passes, own.stage_1_lora) == (20, 4, None)  # the profile's guided dev recipe
    assert ManifestRow(job_id="t", prompt="p").resolve(PROFILES["ltx-2.0-dev"]).steps == 40  # other tasks unchanged
