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
