"""Conditioning as the official LTX-2 pipelines place it, seen where the transformer receives it.

With random weights no decoded frame resembles its condition, so these tests hook the
transformer: what it is given (token positions, timesteps) is what decides where a keyframe
lands, on the tiny model and on each generation's architecture twin.
"""

from __future__ import annotations

from pathlib import Path

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


def control_video(n: int = 17, size: int = 64) -> list:
    return [Image.new("RGB", (size, size), (10 * i, 100, 250 - 10 * i)) for i in range(n)]


@pytest.fixture(scope="module")
def control_engine(tiny_model):
    """An engine of its own: these tests load IC-LoRAs, which the session's shared engine must not cache."""
    from ltx_ray.engine.ltx2 import LTX2Engine

    return LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile)


def test_control_runs_the_distilled_ic_lora_recipe_with_the_stage_2_lora_in_stage_1_on_a_dev_model(control_engine, tiny_model):
    """ic_lora.py: 8 distilled sigmas, one unguided pass a step, on a distilled transformer: the tiny
    (dev) model's stage-2 LoRA makes it one, as it does in stage 2."""
    ic = str(Path(tiny_model.path) / "loras" / "ic-depth.safetensors")
    job = ManifestRow(job_id="c", prompt="a lamp", control="depth", control_uri="d.mp4", ic_lora=ic, width=64,
                      height=64, num_frames=17, seed=3).resolve(control_engine.profile)
    calls = []
    handle = control_engine._pipes["t2v"].transformer.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append(kw["timestep"].shape[0]), with_kwargs=True)
    try:
        clip = control_engine.generate(job, JobInputs(control=control_video()))
    finally:
        handle.remove()
    assert calls == [1] * 8  # eight steps, one unguided pass (batch 1) each
    assert [lora["uri"] for lora in clip.info["loras"]] == [ic, control_engine.stages.distilled_lora]
    assert clip.info["stages"][0]["sigmas"] == [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]


def test_an_ic_lora_trained_at_a_lower_frame_rate_sees_its_control_video_subsampled_and_spread_over_the_clip(
        control_engine, tiny_model, tmp_path):
    """reference_temporal_scale_factor 2 (iclora_utils.temporal_subsample + VideoConditionByReferenceLatent):
    frames 0, 1, 3, ..., 15 of the 17 are encoded (2 latent frames) and placed 2 frames apart, shifted
    so the last ends with the target's last: latent 0 at [0, 1) / fps, latent 1 at [1, 17) / fps."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = Path(tiny_model.path) / "loras" / "ic-depth.safetensors"
    with safe_open(str(source), framework="pt") as fh:
        tensors, metadata = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata() or {}
    ic = tmp_path / "ic-depth-half-rate.safetensors"
    save_file(tensors, str(ic), metadata={**metadata, "reference_temporal_scale_factor": "2"})
    job = ManifestRow(job_id="c", prompt="a lamp", control="depth", control_uri="d.mp4", ic_lora=str(ic), width=64,
                      height=64, num_frames=17, seed=3).resolve(control_engine.profile)
    kwargs = first_transformer_call(control_engine, job, JobInputs(control=control_video()))
    per_frame, target = 2 * 2, 3 * 2 * 2  # tokens per latent frame at 64x64; 17 frames are 3 latent frames
    coords = kwargs["video_coords"][0, 0]  # [tokens, (start, end)] in seconds
    assert coords.shape[0] == target + 2 * per_frame  # the reference is 2 latent frames, not 3
    reference = coords[target:] * job.fps
    expected = torch.tensor([[0.0, 1.0]] * per_frame + [[1.0, 17.0]] * per_frame)
    assert torch.allclose(reference, expected, atol=1e-3), reference
    plain = first_transformer_call(control_engine, job.model_copy(update={"ic_lora": str(source)}), JobInputs(control=control_video()))
    assert torch.allclose(plain["video_coords"][0, 0, target:] * job.fps,
                          torch.tensor([[0.0, 1.0]] * per_frame + [[1.0, 9.0]] * per_frame + [[9.0, 17.0]] * per_frame),
                          atol=1e-3)  # without the metadata: every frame, at its own time
