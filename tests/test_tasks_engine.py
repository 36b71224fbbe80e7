"""Engine-level behaviour of the tasks on the tiny model: LoRA isolation, tiled refinement, segment plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltx_ray.engine.segments import plan_segments
from ltx_ray.engine.types import JobInputs
from ltx_ray.schema.manifest import ManifestRow


def job(engine, **row):
    fields = {"job_id": "j", "prompt": "a lamp on a desk", "width": 128, "height": 96, "num_frames": 9, "seed": 11, **row}
    return ManifestRow(**fields).resolve(engine.profile)


def test_a_rows_lora_never_leaks_into_the_next_row(engine, tiny_model):
    style = str(Path(tiny_model.path) / "loras" / "style.safetensors")
    before = engine.generate(job(engine), JobInputs()).frames
    with_lora = engine.generate(job(engine, loras=[{"uri": style, "scale": 1.0}]), JobInputs()).frames
    after = engine.generate(job(engine), JobInputs()).frames
    again = engine.generate(job(engine, loras=[{"uri": style, "scale": 1.0}]), JobInputs()).frames
    assert np.array_equal(before, after)
    assert np.abs(with_lora.astype(int) - before.astype(int)).mean() > 1.0
    assert np.array_equal(with_lora, again)  # the cached adapter, same scale, same video
    assert list(engine.loras._names) == [style]  # loaded once


def test_a_lora_scale_is_applied_per_row(engine, tiny_model):
    style = str(Path(tiny_model.path) / "loras" / "style.safetensors")
    full = engine.generate(job(engine, loras=[{"uri": style, "scale": 1.0}]), JobInputs()).frames
    half = engine.generate(job(engine, loras=[{"uri": style, "scale": 0.5}]), JobInputs()).frames
    assert not np.array_equal(full, half)


def test_two_stage_refinement_splits_huge_token_counts_into_tiles(engine):
    limit = engine.stages.max_refine_tokens
    engine.stages.max_refine_tokens = 48  # stage 2 of 192x256x9 is 2 x 6 x 8 = 96 tokens: 4 x 6 tiles
    try:
        clip = engine.generate(job(engine, width=256, height=192, two_stage=True), JobInputs())
    finally:
        engine.stages.max_refine_tokens = limit
    assert len(clip.info["stages"]) == 2 and clip.info["refine_tiles"] == 4
    assert clip.frames.shape == (9, 192, 256, 3)
    whole = engine.generate(job(engine, width=256, height=192, two_stage=True), JobInputs())
    assert whole.info["refine_tiles"] == 1 and whole.frames.shape == clip.frames.shape


def test_segment_plans_cover_the_video_with_valid_overlapping_segments():
    assert plan_segments(17, 241) == [(0, 17)]
    assert plan_segments(49, 25) == [(0, 25), (16, 25), (32, 17)]
    plan = plan_segments(721, 241)  # 30 s at 24 fps
    assert plan[0] == (0, 241) and all((n - 1) % 8 == 0 and n <= 241 for _, n in plan)
    assert plan[-1][0] + plan[-1][1] >= 721
    assert all(b[0] == a[0] + a[1] - 9 for a, b in zip(plan, plan[1:]))


def test_a_chain_writes_each_segments_new_frames_once_in_order_and_cross_fades_the_audio_under_the_joins():
    """generate_long with a fake of LTX2Engine.generate_segment (numbered frames, a tone per segment)."""
    from ltx_ray.engine.segments import generate_long
    from ltx_ray.engine.types import Clip

    row = ManifestRow(job_id="j", prompt="p", width=64, height=32, num_frames=49, segment_frames=25, seed=5)
    chain = row.resolve(_profile())
    calls = []

    def fake_segment(seg_job, inputs, _on_step):
        k = seg_job.seed - chain.seed
        calls.append((k, seg_job.num_frames, None if inputs.prefix is None else len(inputs.prefix)))
        frames = np.full((seg_job.num_frames, 32, 64, 3), 0, np.uint8)
        frames[:, 0, 0, 0] = np.arange(seg_job.num_frames)  # frame i of segment k says (k, i)
        frames[:, 0, 0, 1] = k
        audio = np.full((2, round(seg_job.num_frames / chain.fps * 48000)), k + 1, np.float32)
        return Clip(frames=frames, fps=chain.fps, audio=audio, sample_rate=48000)

    clip = generate_long(fake_segment, chain, JobInputs(), 48000)
    # 49 frames from segments of 25, 25, 17 sharing 9 frames at each join: (k, i) in order.
    assert calls == [(0, 25, None), (1, 25, 9), (2, 17, 9)]
    want = [(0, i) for i in range(25)] + [(1, i) for i in range(9, 25)] + [(2, i) for i in range(9, 17)]
    assert [(int(f[0, 0, 1]), int(f[0, 0, 0])) for f in clip.frames] == want
    assert clip.frames.shape == (49, 32, 64, 3)
    assert clip.audio.shape[1] == round(49 / chain.fps * 48000)  # as long as the video
    assert clip.audio[0, 0] == 1 and clip.audio[0, -1] == 3  # the last segment's tone at the end


def _profile():
    from ltx_ray.schema.profiles import ModelProfile

    return ModelProfile()


def test_the_tiny_model_ships_an_upsampler_and_its_own_loras(tiny_model):
    root = Path(tiny_model.path)
    assert (root / "latent_upsampler" / "config.json").exists()
    names = sorted(p.name for p in (root / "loras").glob("*.safetensors"))
    assert names == ["distilled.safetensors", "ic-canny.safetensors", "ic-depth.safetensors", "ic-pose.safetensors", "style.safetensors"]
    from ltx_ray.engine.lora import LoraCache

    assert LoraCache.reference_downscale_factor(str(root / "loras" / "ic-pose.safetensors")) == 1
