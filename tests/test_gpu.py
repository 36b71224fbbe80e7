"""Smoke tests on a real accelerator (``gpu``: skipped without CUDA), and the real-size components."""

from __future__ import annotations

import pytest

from ltx_ray.engine.ltx2 import LTX2Engine
from ltx_ray.engine.types import JobInputs
from ltx_ray.schema.manifest import ManifestRow


def _job(engine):
    return ManifestRow(job_id="gpu", prompt="a cat", width=256, height=160, num_frames=17).resolve(engine.profile)


@pytest.mark.gpu
def test_the_engine_places_and_runs_the_tiny_model_on_cuda(tiny_model):
    import torch

    engine = LTX2Engine(tiny_model.path, device="cuda", dtype="bfloat16", profile=tiny_model.profile, offload="none")
    assert engine.placement.offload == "none"
    assert all(d.startswith("cuda") for d in engine.placement.devices.values())
    clip = engine.generate(_job(engine), JobInputs())
    assert clip.frames.shape == (17, 160, 256, 3)
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.gpu
@pytest.mark.parametrize("offload", ["model", "group"])
def test_offloading_runs_on_cuda(tiny_model, offload):
    engine = LTX2Engine(tiny_model.path, device="cuda", dtype="bfloat16", profile=tiny_model.profile, offload=offload)
    assert engine.placement.offload == offload
    assert engine.generate(_job(engine), JobInputs()).frames.shape == (17, 160, 256, 3)


def real_size_pass_inputs(generation: str, config: dict, width: int, height: int, frames: int, device, dtype) -> dict:
    """The keyword arguments of one DiT pass at ``width x height x frames`` for the real-size
    ``config``: the geometry (coordinates, masks, timestep) as the generation's twin pipeline
    builds it, the hidden states random at the real widths."""
    import torch
    from diffusers import LTX2Pipeline

    from ltx_ray.engine.twins import resolve_twin

    twin = LTX2Pipeline.from_pretrained(resolve_twin(generation), dtype=torch.float32)
    captured = {}

    def grab(_module, _args, kwargs):
        captured.update(kwargs)
        raise StopIteration  # the geometry is all we need from the twin

    twin.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.inference_mode(), pytest.raises(StopIteration):
        twin(prompt="a fox", width=width, height=height, num_frames=frames, sigmas=[1.0], guidance_scale=1.0,
             audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0, audio_modality_scale=1.0,
             max_sequence_length=1024, output_type="latent")
    # Each hidden state's width is the one of these config keys the twin's width matches.
    keys = {"hidden_states": ["in_channels"], "audio_hidden_states": ["audio_in_channels"],
            "encoder_hidden_states": ["caption_channels", "cross_attention_dim"],
            "audio_encoder_hidden_states": ["caption_channels", "audio_cross_attention_dim"]}
    small = twin.transformer.config
    widths = {name: next(config[k] for k in options if small[k] == captured[name].shape[-1])
              for name, options in keys.items()}
    # The first step of the profile's schedule: sigma 1 (the shipped 2.0 scheduler's stretch
    # makes the twin's own one-sigma timestep NaN, the trap the profiles' explicit sigmas avoid).
    captured["sigma"] = torch.ones_like(captured["sigma"])
    captured["timestep"] = torch.full_like(captured["timestep"], 1000.0)
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name, value in captured.items():
        if name in widths:
            value = torch.randn(*value.shape[:-1], widths[name], generator=generator)
        out[name] = value.to(device, dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else (
            value.to(device) if isinstance(value, torch.Tensor) else value)
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("generation", ["ltx-2.0", "ltx-2.5"])
def test_a_real_size_transformer_runs_a_step_at_768x512x121_in_bfloat16(model_cache, generation):
    """The real 2.0 / 2.5 DiT configs (random weights) on the GPU: bf16 throughout, a finite
    step, and its seconds (printed; run with -s)."""
    import json
    import time

    import torch
    from diffusers import LTX2VideoTransformer3DModel

    from ltx_ray.engine.twins import REAL_CONFIGS

    config = json.loads((REAL_CONFIGS / generation / "transformer.json").read_text())
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            dit = LTX2VideoTransformer3DModel.from_config(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    assert {p.dtype for p in dit.parameters()} == {torch.bfloat16}
    kwargs = real_size_pass_inputs(generation, config, 768, 512, 121, "cuda", torch.bfloat16)
    with torch.inference_mode():
        dit(**kwargs)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = dit(**kwargs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    video = out[0] if isinstance(out, tuple) else out.sample
    assert video.dtype == torch.bfloat16 and torch.isfinite(video).all()
    print(f"{generation}: one pass at 768x512x121 (6144 video tokens) in {seconds:.3f} s on {torch.cuda.get_device_name()}")


@pytest.mark.parametrize("generation", ["ltx-2.0", "ltx-2.5"])
def test_the_real_size_components_have_the_real_parameter_counts(generation):
    """Built on the meta device (no memory): a 19B DiT and Gemma 3 12B (with its vision tower)."""
    import torch

    from ltx_ray.engine.real_size import build_components

    components = build_components(generation, "meta", torch.bfloat16)
    params = {n: sum(p.numel() for p in m.parameters()) / 1e9 for n, m in components.items() if isinstance(m, torch.nn.Module)}
    assert 18.8 < params["transformer"] < 19.1 and 12.1 < params["text_encoder"] < 12.3
    assert {p.dtype for p in components["transformer"].parameters()} == {torch.bfloat16}
    # The text encoder feeds the connectors every hidden state (embeddings included) at its width.
    text = components["text_encoder"].config.text_config
    assert components["connectors"].config.caption_channels == text.hidden_size
    assert components["connectors"].config.text_proj_in_factor == text.num_hidden_layers + 1
