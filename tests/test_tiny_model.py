"""The embedded tiny LTX-2 keeps the real geometry and loads through from_pretrained."""

from __future__ import annotations

import json

import numpy as np
import torch

from ltx_ray.engine.tiny_model import TINY_MODEL_ID
from ltx_ray.engine.types import JobInputs
from ltx_ray.engine.weights import CARD_NAME, resolve_model
from ltx_ray.schema.manifest import ManifestRow


def test_tiny_model_is_saved_in_diffusers_format(tiny_model):
    from pathlib import Path

    path = Path(tiny_model.path)
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "LTX2Pipeline"
    for component in ("transformer", "vae", "audio_vae", "vocoder", "text_encoder", "tokenizer", "connectors"):
        assert (path / component).is_dir(), component
    assert json.loads((path / CARD_NAME).read_text())["model_id"] == TINY_MODEL_ID
    assert resolve_model("tiny").path == tiny_model.path  # cached, not rebuilt


def test_768x512x121_has_the_real_6144_video_tokens(engine):
    pipe = engine._pipes["t2v"]
    assert pipe.vae_spatial_compression_ratio == 32 and pipe.vae_temporal_compression_ratio == 8
    with torch.inference_mode():
        out = pipe(prompt="a cat", width=768, height=512, num_frames=121, num_inference_steps=1,
                   guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0, audio_modality_scale=1.0,
                   audio_guidance_scale=1.0, max_sequence_length=32, output_type="latent",
                   generator=torch.Generator().manual_seed(0))
    _, _, f, h, w = out.frames.shape
    assert f * h * w == 6144
    # 25 audio latents per second of video (16 kHz, hop 160, 4x time compression)
    assert abs(out.audio.shape[2] - 121 / 24 * 25) <= 1


def test_audio_lasts_as_long_as_the_video(engine):
    job = ManifestRow(job_id="geo", prompt="rain on a window", width=256, height=256, num_frames=49).resolve(engine.profile)
    clip = engine.generate(job, JobInputs())
    assert clip.frames.shape == (49, 256, 256, 3) and clip.frames.dtype == np.uint8
    assert clip.sample_rate == 24000 and clip.audio.shape[0] == 2
    video_s = 49 / 24
    # The vocoder gives whole audio latents; the muxer pads the last fraction of a frame.
    assert abs(clip.audio.shape[1] / clip.sample_rate - video_s) < 2 / 24
