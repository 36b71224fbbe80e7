"""The streamed VAE decode: diffusers' tiled decode to the bit, without its full-length float copies."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.e2e  # the tiny model's VAE

# (latent frames, latent height, latent width, spatial tiles, temporal tiles): several tiles
# each way with 96 px tiles every 64 px, a clip smaller than one tile, and each mode alone.
CASES = [(5, 4, 6, True, True), (4, 6, 6, True, False), (7, 6, 4, True, True), (6, 2, 2, False, True), (3, 2, 3, False, False)]


@pytest.fixture(scope="module")
def vae(tiny_model):
    from diffusers import AutoencoderKLLTX2Video

    return AutoencoderKLLTX2Video.from_pretrained(tiny_model.path, subfolder="vae").eval()


@pytest.mark.parametrize("f,h,w,spatial,temporal", CASES)
def test_the_streamed_decode_gives_diffusers_tiled_frames_exactly(vae, f, h, w, spatial, temporal):
    import torch
    from diffusers.video_processor import VideoProcessor

    from ltx_ray.engine.vae_stream import stream_decode

    vae.use_tiling, vae.use_framewise_decoding = spatial, temporal
    vae.tile_sample_min_height = vae.tile_sample_min_width = 96
    vae.tile_sample_stride_height = vae.tile_sample_stride_width = 64
    z = torch.randn(1, vae.config.latent_channels, f, h, w, generator=torch.Generator().manual_seed(f * h * w))
    with torch.inference_mode():
        reference = vae.decode(z, None, return_dict=False)[0]  # diffusers, then what Decoders did on the host
        reference = VideoProcessor(vae_scale_factor=32).postprocess_video(reference, output_type="np")[0]
        reference = (np.clip(reference, 0, 1) * 255 + 0.5).astype(np.uint8)
        frames = np.full(reference.shape, 7, dtype=np.uint8)  # every pixel must be written over
        stream_decode(vae, z, None, frames, temporal=temporal)
    assert frames.shape == ((f - 1) * 8 + 1, h * 32, w * 32, 3)
    np.testing.assert_array_equal(frames, reference)


def test_a_large_clip_streams_in_temporal_tiles_and_says_so(engine, vae, monkeypatch):
    """Past ``STREAM_FRAME_BYTES`` the engine decodes in temporal tiles: the frames are the ones
    diffusers' framewise decode gives for the same latents, and the sidecar says so."""
    import torch

    from ltx_ray.engine import decode
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow

    seen = []
    video = engine.decoders.video
    monkeypatch.setattr(engine.decoders, "video", lambda pipe, latents, *a: seen.append(latents) or video(pipe, latents, *a))
    monkeypatch.setitem(decode.STREAM_FRAME_BYTES, "cpu", 41 * 96 * 128 * 3 - 1)  # this clip is "large" now
    job = ManifestRow(job_id="long", prompt="a lamp", width=128, height=96, num_frames=41, steps=1, audio=False
                      ).resolve(engine.profile)
    clip = engine.generate(job, JobInputs())
    assert clip.info["vae_tiling"] == "temporal" and clip.frames.shape == (41, 96, 128, 3)
    vae.use_tiling, vae.use_framewise_decoding = False, True
    with torch.inference_mode():
        reference = vae.decode(seen[0], None, return_dict=False)[0]
    reference = ((reference * 0.5 + 0.5).clamp(0, 1) * 255 + 0.5).to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()
    np.testing.assert_array_equal(clip.frames, reference)
