"""Manifest schema v1: every rule, every problem reported at once, and the generated doc."""

from __future__ import annotations

import json

import pytest

from ltx_ray.errors import ManifestError
from ltx_ray.schema.fields import frames_for_seconds, stable_seed
from ltx_ray.schema.profiles import DEV_VIDEO, ModelProfile
from ltx_ray.storage.manifest import load_and_validate, write_manifest
from tests.conftest import REPO

DEFAULTS = ModelProfile(steps=7, video=DEV_VIDEO.model_copy(update={"cfg": 2.5}))


def validate(tmp_path, rows):
    path = tmp_path / "m.parquet"
    write_manifest(rows, str(path))
    return load_and_validate([str(path)], DEFAULTS)


def problems_by_job(result):
    out = {}
    for p in result.problems:
        out.setdefault(p.job_id, []).append(p)
    return out


def test_a_minimal_row_gets_every_default(tmp_path):
    result = validate(tmp_path, [{"job_id": "a", "prompt": "a cat"}])
    (job,) = result.jobs
    assert (job.task, job.width, job.height, job.num_frames, job.fps) == ("t2v", 768, 512, 121, 24.0)
    assert job.steps == 7 and job.guidance_scale == 2.5 and job.audio is True
    assert job.seed == stable_seed("a")
    assert job.video_tokens == 6144


def test_task_is_inferred_from_the_inputs(tmp_path, images):
    rows = [
        {"job_id": "t", "prompt": "p"},
        {"job_id": "i", "prompt": "p", "image_uri": str(images["red"])},
        {"job_id": "k", "prompt": "p", "keyframes": [{"uri": str(images["red"]), "frame": 0, "strength": None}]},
    ]
    jobs = {j.job_id: j for j in validate(tmp_path, rows).jobs}
    assert [jobs[k].task for k in "tik"] == ["t2v", "i2v", "keyframes"]
    assert jobs["k"].keyframes[0].strength == 1.0


def test_seconds_become_the_nearest_valid_frame_count():
    assert frames_for_seconds(5.0, 24) == 121
    assert frames_for_seconds(2.0, 24) == 49
    assert frames_for_seconds(0.1, 24) == 9
    assert all((frames_for_seconds(s / 10, 30) - 1) % 8 == 0 for s in range(1, 200))


def test_every_bad_row_is_reported_with_job_field_value_and_fix_all_at_once(tmp_path, images):
    rows = [
        {"job_id": "ok", "prompt": "fine"},
        {"job_id": "w", "prompt": "p", "width": 500},
        {"job_id": "f", "prompt": "p", "num_frames": 120},
        {"job_id": "blank", "prompt": "   "},
        {"job_id": "../escape", "prompt": "p"},
        {"job_id": "meta", "prompt": "p", "metadata": "[1, 2]"},
        {"job_id": "metajson", "prompt": "p", "metadata": "{not json"},
        {"job_id": "contra", "prompt": "p", "task": "i2v"},
        {"job_id": "kf-out", "prompt": "p", "num_frames": 17, "keyframes": [{"uri": str(images["red"]), "frame": 17, "strength": 1.0}]},
        {"job_id": "kf-dup", "prompt": "p", "keyframes": [{"uri": str(images["red"]), "frame": 8, "strength": 1.0}, {"uri": str(images["blue"]), "frame": 8, "strength": 1.0}]},
        {"job_id": "scheme", "prompt": "p", "image_uri": "ftp://host/x.png"},
        {"job_id": "both", "prompt": "p", "num_frames": 17, "seconds": 2.0},
        {"job_id": "nan", "prompt": "p", "fps": float("nan")},
        {"job_id": "ok", "prompt": "again"},
    ]
    result = validate(tmp_path, rows)
    assert [j.job_id for j in result.jobs] == ["ok"]
    by_job = problems_by_job(result)
    expect = {
        "w": ("width", "multiple of 32; use 512"),
        "f": ("num_frames", "8k + 1"),
        "blank": ("prompt", "blank"),
        "../escape": ("job_id", "letters, digits"),
        "meta": ("metadata", "JSON object"),
        "metajson": ("metadata", "not valid JSON"),
        "contra": ("task", "i2v job needs image_uri"),
        "kf-out": ("keyframes", "outside the video of 17 frames"),
        "kf-dup": ("keyframes", "repeat a frame"),
        "scheme": ("image_uri", "unsupported scheme 'ftp'"),
        "both": ("num_frames", "give only one"),
        "nan": ("fps", "finite"),
        "ok": ("job_id", "duplicate job_id"),
    }
    assert set(by_job) == set(expect)
    for job_id, (field, text) in expect.items():
        messages = [f"{p.field}: {p.message}" for p in by_job[job_id]]
        assert any(p.field == field and text in p.message for p in by_job[job_id]), (job_id, messages)
    # Each line a person reads names the manifest row, the job, the field and the value.
    line = str(by_job["w"][0])
    assert "m.parquet row 1" in line and "'w'" in line and "width = 500" in line


def test_unknown_columns_are_errors_but_x_columns_pass_through(tmp_path):
    rows = [{"job_id": "a", "prompt": "p", "x_sku": "A1", "colour": "red"}]
    result = validate(tmp_path, rows)
    (problem,) = result.problems
    assert problem.field == "colour" and "x_" in problem.message
    result = validate(tmp_path, [{"job_id": "a", "prompt": "p", "x_sku": "A1"}])
    assert result.jobs[0].passthrough == {"x_sku": "A1"}


def test_missing_required_column_is_named(tmp_path):
    result = validate(tmp_path, [{"job_id": "a"}])
    (problem,) = result.problems
    assert problem.field == "prompt" and "required" in problem.message


def test_manifest_level_problems_are_fatal(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_and_validate([str(tmp_path / "nope.parquet")], DEFAULTS)
    bad = tmp_path / "bad.parquet"
    bad.write_text("job_id,prompt\na,b\n")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        load_and_validate([str(bad)], DEFAULTS)
    empty = tmp_path / "empty.parquet"
    write_manifest([], str(empty))
    with pytest.raises(ManifestError, match="no rows"):
        load_and_validate([str(empty)], DEFAULTS)


def test_folders_and_globs_expand_and_relative_images_follow_the_manifest(tmp_path, images):
    (tmp_path / "sub").mkdir()
    write_manifest([{"job_id": "a", "prompt": "p", "image_uri": "../red.png"}], str(tmp_path / "sub" / "one.parquet"))
    write_manifest([{"job_id": "b", "prompt": "p"}], str(tmp_path / "sub" / "two.parquet"))
    by_dir = load_and_validate([str(tmp_path / "sub")], DEFAULTS)
    by_glob = load_and_validate([str(tmp_path / "sub" / "*.parquet")], DEFAULTS)
    assert [j.job_id for j in by_dir.jobs] == [j.job_id for j in by_glob.jobs] == ["a", "b"]
    assert by_dir.jobs[0].image_uri == str(tmp_path / "sub" / "../red.png")


def test_metadata_reaches_the_job_as_an_object(tmp_path):
    result = validate(tmp_path, [{"job_id": "a", "prompt": "p", "metadata": json.dumps({"sku": "A1", "n": 2})}])
    assert result.jobs[0].metadata == {"sku": "A1", "n": 2}


def test_schema_doc_matches_the_schema():
    from ltx_ray.schema.doc import render_schema_doc

    on_disk = (REPO / "manifests" / "SCHEMA.md").read_text()
    assert on_disk == render_schema_doc(), "manifests/SCHEMA.md drifted: run `ltx-ray schema-doc --write manifests/SCHEMA.md`"


def test_the_demo_manifest_is_valid():
    result = load_and_validate([str(REPO / "manifests" / "demo.parquet")], DEFAULTS)
    assert not result.problems
    assert {j.task for j in result.jobs} == {"t2v", "i2v", "keyframes"}
