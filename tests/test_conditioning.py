"""Conditioning as the official LTX-2 pipelines place it, seen where the transformer receives it.

With random weights no decoded frame resembles its condition, so these tests hook the
transformer: what it is given (token positions, timesteps) is what decides where a keyframe
lands, on the tiny model and on each generation's architecture twin.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ltx_ray.engine.twins import TWIN_GENERATIONS, resolve_twin
from ltx_ray.engine.types import JobInputs
from ltx_ray.engine.weights import resolve_model
from ltx_ray.schema.manifest import ManifestRow

pytestmark = pytest.mark.e2e
GENERATIONS = ["tiny", *TWIN_GENERATIONS]


class Seen(Exception):
    """Raised by a hook once it has what it came for: the rest of the denoising is not needed."""


@pytest.fixture(scope="module")
def models(model_cache):
    return {gen: resolve_model("tiny" if gen == "tiny" else str(resolve_twin(gen))) for gen in GENERATIONS}


def fp32_engine(model):
    """The model's engine on the CPU in float32, and the steps a two-stage test runs (a distilled
    schedule has its 8 fixed sigmas; a dev one is cut to 2)."""
    from ltx_ray.engine.ltx2 import LTX2Engine

    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile)
    return engine, 8 if model.profile.schedule == "distilled" else 2


def first_transformer_call(engine, job, inputs) -> dict:
    """The keyword arguments of the first transformer call of a job."""
    seen = {}

    def hook(_module, _args, kwargs):
        seen.update(kwargs)
        raise Seen

    handle = engine._pipes["t2v"].transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(Seen):
            engine.generate(job, inputs)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("gen", GENERATIONS)
def test_keyframes_at_0_60_and_120_of_121_reach_the_transformer_at_exactly_those_frames(models, gen):
    from ltx_ray.engine.ltx2 import LTX2Engine

    model = models[gen]
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile)
    frames = [0, 60, 120]
    keyframes = [{"uri": f"k{f}.png", "frame": f} for f in frames]
    job = ManifestRow(job_id="kf", prompt="a product turn", width=64, height=64, num_frames=121, seed=3,
                      keyframes=keyframes).resolve(model.profile)
    assert job.keyframe_time == "exact"
    images = [Image.new("RGB", (64, 64), (40 * i, 90, 200 - 40 * i)) for i in range(3)]
    kwargs = first_transformer_call(engine, job, JobInputs(keyframes=[(img, f, 1.0) for img, f in zip(images, frames)]))

    coords = kwargs["video_coords"][0, 0]  # [tokens, (start, end)] of the time axis, in seconds
    per_latent = 2 * 2  # a 64x64 video is 2x2 latent cells at 32x compression
    generated = (121 - 1) // 8 + 1
    assert coords.shape[0] == (generated + 2) * per_latent  # the 16 latent frames + 2 appended keyframes
    start_frames = coords[:, 0] * job.fps
    # Frame 0 replaces the first latent (VideoConditionByLatentIndex), which starts at frame 0.
    assert torch.allclose(start_frames[:per_latent], torch.zeros(per_latent), atol=1e-4)
    # 60 and 120 are appended tokens at exactly their frame (diffusers alone puts them at 57 and 113),
    # one frame long, as VideoConditionByKeyframeIndex does for a single image.
    appended = start_frames[generated * per_latent :].reshape(2, per_latent)
    assert torch.allclose(appended, torch.tensor([[60.0], [120.0]]).expand(2, per_latent), atol=1e-3), appended
    ends = coords[generated * per_latent :, 1] * job.fps
    assert torch.allclose(ends, appended.flatten() + 1, atol=1e-3)


@pytest.mark.parametrize("gen", GENERATIONS)
def test_a2v_holds_the_given_audio_clean_at_timestep_0_in_every_call_of_both_stages(models, gen):
    import numpy as np

    model = models[gen]
    engine, steps = fp32_engine(model)
    job = ManifestRow(job_id="a2v", prompt="a singer", audio_uri="voice.wav", width=128, height=128, num_frames=9,
                      steps=steps, two_stage=True, seed=5).resolve(model.profile)
    assert job.task == "a2v" and job.audio_guidance.is_off  # the track is not guided, only the video
    rate = 16000
    t = np.arange(rate) / rate
    track = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.5
    inputs = JobInputs(audio=track, audio_rate=rate)

    calls = []
    pipe = engine._pipes["t2v"]
    handle = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append({k: kw[k].clone() for k in ("audio_hidden_states", "audio_timestep",
                                                                    "audio_sigma", "timestep")}),
        with_kwargs=True,
    )
    try:
        clip = engine.generate(job, inputs)
    finally:
        handle.remove()

    # Stage 1's steps x passes per step (CFG's two in one batched call), then stage 2's three
    # distilled steps of one pass.
    assert sum(len(call["timestep"]) for call in calls) == steps * job.transformer_passes + 3
    with torch.no_grad():
        given = pipe._normalize_audio_latents(pipe._pack_audio_latents(engine._encode_audio(job, inputs)),
                                              pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std)
    for call in calls:
        for item in call["audio_hidden_states"]:  # every batch item (conditional and unconditional)
            assert torch.equal(item, given[0])
        assert not call["audio_timestep"].any() and not call["audio_sigma"].any()
    assert all(call["timestep"].max() > 0 for call in calls)  # the video is still being denoised
    assert clip.frames.shape[0] == 9 and np.isfinite(clip.frames).all()


@pytest.mark.parametrize("gen", GENERATIONS)
def test_two_stage_i2v_refines_from_the_image_encoded_again_at_full_size(models, gen):
    model = models[gen]
    engine, steps = fp32_engine(model)
    job = ManifestRow(job_id="i2v", prompt="a lamp", image_uri="a.png", width=128, height=128, num_frames=9,
                      steps=steps, two_stage=True, seed=2).resolve(model.profile)
    image = Image.radial_gradient("L").convert("RGB").resize((160, 128))
    pipe = engine._pipes["i2v"]
    full = (9 - 1) // 8 + 1, 128 // 32, 128 // 32  # latent frames, rows, columns at full size
    stage_2 = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: stage_2.append(kw["hidden_states"][0].clone())
        if kw["hidden_states"].shape[1] == full[0] * full[1] * full[2] else None,
        with_kwargs=True,
    )
    try:
        engine.generate(job, JobInputs(image=image))
    finally:
        handle.remove()

    assert len(stage_2) == 3  # the three distilled refinement steps
    with torch.no_grad():
        expected = pipe._pack_latents(pipe._normalize_latents(
            engine.stages._encode_image(pipe, image, 128, 128), pipe.vae.latents_mean, pipe.vae.latents_std,
            pipe.vae.config.scaling_factor))[0]
    first_frame = full[1] * full[2]
    for tokens in stage_2:  # held clean at every step: the full-size encoding, not the upsampled stage-1 latent
        assert torch.allclose(tokens[:first_frame], expected, atol=1e-5)
