"""The prompt-embedding cache: a prompt is encoded once per worker, whatever reuses it."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from ltx_ray.engine.prompt_cache import PromptCache
from ltx_ray.engine.types import JobInputs
from ltx_ray.job.runner import JobRunner
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.storage.store import OutputStore

pytestmark = pytest.mark.e2e
SMALL = {"width": 128, "height": 64, "num_frames": 9}


@pytest.fixture(scope="module")
def engine(tiny_model):
    """An engine of this module's own: its two-stage row loads the stage-2 LoRA, which the
    session's shared engine must not cache for other modules' LoRA tests."""
    from ltx_ray.engine.ltx2 import LTX2Engine

    return LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile)


def test_six_rows_sharing_a_prompt_encode_it_once_across_rows_stages_segments_and_tasks(engine, tiny_model, tmp_path, images):
    prompt = f"a teal kettle on a stove {uuid.uuid4().hex}"  # unique: the session's engine is shared
    rows = [
        {"job_id": "a", "seed": 1},
        {"job_id": "b", "seed": 2},
        {"job_id": "two-stage", "two_stage": True},  # stage 1 and the refinement
        {"job_id": "chain", "num_frames": 41, "segment_frames": 25},  # two segments
        {"job_id": "i2v", "image_uri": str(images["red"])},
        {"job_id": "qc", "qc": json.dumps({"min_motion": 1e9, "max_attempts": 2})},  # fails QC: two attempts
    ]
    jobs = [ManifestRow(prompt=prompt, **{**SMALL, **row}).resolve(tiny_model.profile) for row in rows]
    calls = []
    handle = engine._pipes["t2v"].text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        runner = JobRunner(engine, OutputStore(str(tmp_path)), tiny_model, device="cpu", dtype="float32", run_id="r")
        results = [runner.run(job) for job in jobs]
    finally:
        handle.remove()
    assert [r.status for r in results] == ["succeeded"] * 5 + ["failed"]  # the last failed QC, as asked
    assert len(calls) == 2  # the prompt and the negative prompt (the tiny recipe is guided), once
    sidecars = [json.loads((tmp_path / f"{job.job_id}.json").read_text()) for job in jobs[:5]]
    assert [s["generation"]["prompt_cache"] for s in sidecars[:5]] == ["miss"] + ["hit"] * 4
    assert sidecars[0]["timings"]["encode_prompt"] > 0 and all(s["timings"]["encode_prompt"] == 0 for s in sidecars[1:5])


def test_cached_embeddings_give_the_frames_of_encoding_again_and_the_cache_keeps_to_its_bytes(engine, tiny_model):
    job = ManifestRow(job_id="j", prompt=f"a brass lamp {uuid.uuid4().hex}", seed=4, **SMALL).resolve(tiny_model.profile)
    first = engine.generate(job, JobInputs())
    again = engine.generate(job, JobInputs())  # from the cache
    assert (first.info["prompt_cache"], again.info["prompt_cache"]) == ("miss", "hit")
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.audio, again.audio)

    pipe = engine._pipes["t2v"]
    one = PromptCache()
    entry = one.encode(pipe, "p", "n", max_sequence_length=engine.profile.max_sequence_length, device="cpu")
    size = sum(t.numel() * t.element_size() for t in entry.values())
    small = PromptCache(max_bytes=2 * size)  # room for two prompt / negative pairs
    for text in ("a", "b", "c", "a"):
        small.encode(pipe, text, "n", max_sequence_length=engine.profile.max_sequence_length, device="cpu")
    assert small.bytes == 2 * size and (small.hits, small.misses) == (0, 4)  # "a" was dropped for "c"
    small.encode(pipe, "c", "n", max_sequence_length=engine.profile.max_sequence_length, device="cpu")
    assert (small.hits, small.misses) == (1, 4)


def test_seconds_auto_on_a_distilled_model_picks_the_length_and_generates_from_one_encoding(model_cache):
    """The duration head reads the prompt's embeddings, then the (unguided) call uses the same ones:
    LTX-2.5 distilled's text encoder runs once for a seconds: auto row, not twice."""
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.twins import resolve_twin
    from ltx_ray.engine.weights import resolve_model

    model = resolve_model(str(resolve_twin("ltx-2.5")))
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile)
    job = ManifestRow(job_id="auto", prompt="a fox in the snow", seconds="auto", min_seconds=0.5, max_seconds=2,
                      width=64, height=64, seed=7).resolve(model.profile)
    calls = []
    handle = engine._pipes["t2v"].text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        clip = engine.generate(job, JobInputs())
    finally:
        handle.remove()
    assert clip.info["duration"]["num_frames"] == clip.frames.shape[0]
    assert len(calls) == 1 and clip.info["prompt_cache"] == "miss"
