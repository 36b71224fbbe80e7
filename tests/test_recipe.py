"""A job's recipe: what its hash is taken over, and what a rerun says changed."""

from __future__ import annotations

import json

from pydantic import Field

from ltx_ray.schema.job import Job
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.model import ResolvedModel
from ltx_ray.schema.profiles import PROFILES
from ltx_ray.schema.results import hash_recipe, job_hash, recipe, recipe_changes

MODEL = ResolvedModel(source="tiny", path="/m", model_id="tiny-ltx2", revision="3", profile=PROFILES["tiny"])


def _job(**row) -> Job:
    return ManifestRow(job_id="j", prompt="a red sneaker", **row).resolve(MODEL.profile)


def test_the_hash_is_the_recipes_and_changes_with_any_resolved_parameter():
    job = _job()
    assert job_hash(job, MODEL) == hash_recipe(recipe(job, MODEL))
    assert job_hash(_job(seed=7), MODEL) != job_hash(_job(seed=8), MODEL)
    other_rev = MODEL.model_copy(update={"revision": "4"})
    assert job_hash(job, other_rev) != job_hash(job, MODEL)


def test_metadata_and_passthrough_do_not_change_the_recipe():
    plain, tagged = _job(), _job(metadata=json.dumps({"sku": "S1"}))
    assert job_hash(plain, MODEL) == job_hash(tagged, MODEL)


def test_a_parameter_added_later_with_its_old_behaviour_as_default_keeps_finished_rows():
    class NewerJob(Job):  # what a later ltx-ray's Job would be: one more field, defaulting to today's behaviour
        tile_overlap: int = Field(default=0)

    job = _job()
    newer = NewerJob(**job.model_dump())
    assert job_hash(newer, MODEL) == job_hash(job, MODEL)
    assert recipe_changes(json.dumps(recipe(job, MODEL)), recipe(newer, MODEL), NewerJob) == []
    changed = NewerJob(**job.model_dump(), tile_overlap=8)
    assert job_hash(changed, MODEL) != job_hash(job, MODEL)
    assert recipe_changes(json.dumps(recipe(job, MODEL)), recipe(changed, MODEL), NewerJob) == ["tile_overlap: 0 -> 8"]


def test_changes_name_each_field_nested_ones_dotted_and_the_model():
    before, after = _job(steps=4), _job(steps=6, guidance_scale=2.0)
    lines = recipe_changes(json.dumps(recipe(before, MODEL)), recipe(after, MODEL.model_copy(update={"revision": "4"})), Job)
    assert lines == ['rev: "3" -> "4"', "guidance_scale: 3.0 -> 2.0", "steps: 4 -> 6", "video_guidance.cfg: 3.0 -> 2.0"]


def test_a_row_finished_before_recipes_were_recorded_says_so():
    assert recipe_changes(None, recipe(_job(), MODEL), Job) == ["no recipe recorded (finished by an earlier ltx-ray)"]


def test_exact_keyframes_regenerate_keyframe_rows_finished_on_the_latent_grid_and_no_others():
    kf = _job(keyframes=[{"uri": "a.png", "frame": 0}, {"uri": "b.png", "frame": 12}])
    # What an ltx-ray before exact keyframes resolved: the same job, keyframes on the latent grid.
    before = kf.model_copy(update={"keyframe_time": "latent_grid"})
    assert "keyframe_time" not in recipe(before, MODEL)["job"]  # the old default: not in old recipes
    assert recipe_changes(json.dumps(recipe(before, MODEL)), recipe(kf, MODEL), Job) == [
        'keyframe_time: "latent_grid" -> "exact"']
    assert (before.landed_frame(12), kf.landed_frame(12)) == (9, 12)
    assert _job().keyframe_time == "latent_grid"  # a job without keyframes keeps its hash
