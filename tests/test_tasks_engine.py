"""Engine-level behaviour of the tasks on the tiny model: LoRA isolation, tiled refinement, segment plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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


def test_a_tiled_refinement_has_no_visible_seams_and_keeps_the_i2v_first_frame(engine):
    """Above the token cap every refinement step runs its transformer call tile by tile and
    blends it (engine/tiling.py); compared with the untiled refinement of the same job."""
    from PIL import Image

    from ltx_ray.engine.tiling import tiles_for

    row = job(engine, width=384, height=192, two_stage=True, image_uri="a.png", seed=3)
    image = Image.radial_gradient("L").convert("RGB").resize((384, 192))
    whole = engine.generate(row, JobInputs(image=image))
    limit = engine.stages.max_refine_tokens
    engine.stages.max_refine_tokens = 72  # stage 2 of 384x192x9 is 2 x 6 x 12 = 144 tokens
    try:
        tiled = engine.generate(row, JobInputs(image=image))
    finally:
        engine.stages.max_refine_tokens = limit
    tiles = tiles_for(2, 6, 12, 72)
    assert whole.info["refine_tiles"] == 1 and tiled.info["refine_tiles"] == len(tiles) == 3
    assert tiled.frames.shape == whole.frames.shape == (9, 192, 384, 3)
    # The image is held in every tile that covers it: the first frame is the untiled one.
    assert np.array_equal(tiled.frames[0], whole.frames[0])
    diff = np.abs(tiled.frames.astype(float) - whole.frames.astype(float)).mean(axis=(0, 1, 3))  # per column
    shared = np.zeros(12, bool)
    for a, b in zip(tiles, tiles[1:]):
        shared[b.widths.start : a.widths.stop] = True  # latent columns two tiles blend
    border = np.repeat(shared, 32)
    assert 0 < diff[border].mean() <= diff[~border].mean()  # seams no worse than the tiles' insides
    # No edge where a tile ends: the step between neighbouring columns there is the video's own.
    steps = np.abs(np.diff(tiled.frames.astype(float), axis=2)).mean(axis=(0, 1, 3))
    edges = [x * 32 - 1 for t in tiles for x in (t.widths.start, t.widths.stop) if 0 < x < 12]
    assert steps[edges].max() <= 1.1 * np.abs(np.diff(whole.frames.astype(float), axis=2)).mean(axis=(0, 1, 3))[edges].max()


def test_refinement_tiles_fit_the_token_cap_blend_to_one_and_spend_at_most_a_third_more_cells():
    from ltx_ray.engine.stages import MAX_REFINE_TOKENS
    from ltx_ray.engine.tiling import tiles_for

    # Stage-2 latent grids of the presets up to 4K (3840x2176) at 5, 10 and 20 s segments.
    for width, height in [(768, 512), (1280, 704), (1920, 1088), (2560, 1440), (3840, 2176), (2176, 3840)]:
        for frames in (121, 241):
            grid = ((frames - 1) // 8 + 1, height // 32, width // 32)
            tiles = tiles_for(*grid, MAX_REFINE_TOKENS)
            cells = sum((t.heights.stop - t.heights.start) * (t.widths.stop - t.widths.start) for t in tiles)
            assert max(t.blend_weight.numel() for t in tiles) <= MAX_REFINE_TOKENS
            assert cells <= 1.3 * grid[1] * grid[2], (width, height, frames, len(tiles))
            total = torch.zeros(grid)
            for t in tiles:
                total[t.frames, t.heights, t.widths] += t.blend_weight
            assert torch.allclose(total, torch.ones(grid))


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
