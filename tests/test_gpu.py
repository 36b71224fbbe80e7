"""The GPU benchmark (bench/gpu.py) on the CPU, and smoke tests on a real accelerator (``gpu``:
skipped without CUDA)."""

from __future__ import annotations

import json

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


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def mp4_frames(path: str) -> tuple[int, int, int]:
    """(frames, width, height) of the video stream, decoded: the clip was really written."""
    import av

    with av.open(path) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), frames[0].width, frames[0].height


def test_the_gpu_benchmark_runs_every_configuration_of_its_plan_end_to_end_on_the_tiny_model(tiny_model, tmp_path, capsys):
    """``--device cpu``: the script's own code on the tiny model through LTX2Engine and JobRunner, at
    the small sizes; each configuration is measured, or listed with why not."""
    from bench import gpu
    from bench.gpu_configs import plan

    gpu.main(["--device", "cpu", "--json", "--clips", "1", "--queue-jobs", "2", "--peak-tflops", "1",
              "--out", str(tmp_path / "clips"), "--partial", str(tmp_path / "partial.json")])
    r = last_json_line(capsys.readouterr().out)
    assert r["bench"] == "gpu" and r["scale"] == "small" and r["models"]["tiny"]["random_weights"] is False
    configs = r["configs"]
    assert list(configs) == [c.name for c in plan(["tiny"], "small", 1, 2)]  # most important first, none dropped
    assert json.loads((tmp_path / "partial.json").read_text())["configs"].keys() == configs.keys()
    levers = {n: c for n, c in configs.items() if c["lever"]}
    assert levers and all(c["status"] == "skipped" and c["reason"] for c in levers.values())
    assert "CUDA" in levers["tiny distilled 256x160x9 attention=flash"]["reason"]
    assert "CUDA" in levers["tiny distilled 256x160x9 compile"]["reason"]  # on a CPU the compile test covers it
    ok = {n: c for n, c in configs.items() if c["status"] == "ok"}
    assert len(ok) == len(configs) - len(levers)
    for name, c in ok.items():
        assert c["s_per_clip"] > 0 and c["clips_per_gpu_hour"] == pytest.approx(3600 / c["s_per_clip"], rel=1e-3), name
        assert 0 < c["mfu"] and c["tflop_per_clip"] > 0 and c["peak_host_gib"] > 0 and c["peak_gpu_gib"] is None
        stages = c["stage_seconds"]
        assert {"text_encode", "denoise_1", "vae_decode", "audio_decode", "mux", "other"} <= stages.keys(), name
        assert all(v >= 0 for v in stages.values()) and stages["denoise_1"] > 0 and stages["mux"] > 0
        # Passes per step as run match the recipe's count; t2v timesteps are one per sample.
        assert c["passes_per_step"] == c["expected_passes_per_step"] and c["per_token_timesteps"] is False
        assert len(c["videos"]) == c["clips"]
        width, height, frames = (int(v) for v in c["size"].split()[0].split("x"))
        assert all(mp4_frames(v) == (frames, width, height) for v in c["videos"]), name
    # A guided step is CFG's batch of 2 + STG + modality: 4 passes; a distilled step 1.
    assert ok["tiny guided 256x160x9"]["passes_per_step"] == {"denoise_1": 4.0}
    two_stage = ok["tiny distilled 384x256x9 two-stage"]
    assert {"upsample", "denoise_2"} <= two_stage["stage_seconds"].keys() and two_stage["steps"]["denoise_2"] == 3
    queue = ok["tiny distilled 256x160x9 queue 2x2"]
    assert queue["in_flight"] == 2 and queue["clips"] == 2
    assert ok["tiny distilled 256x160x9 lora"]["speedup"] > 0  # beside its baseline


def test_a_budget_with_no_time_left_lists_each_configuration_as_not_run_and_still_ends_with_the_json(tmp_path, capsys):
    from bench import gpu

    gpu.main(["--device", "cpu", "--json", "--budget-s", "1", "--out", str(tmp_path)])
    r = last_json_line(capsys.readouterr().out)
    assert r["budget_s"] == 1 and r["configs"] and r["models"] == {}  # nothing was loaded
    for c in r["configs"].values():
        assert (c["status"], c["reason"].split(":")[0]) in {("not_run", "budget"), ("skipped", c["reason"].split(":")[0])}
    assert {c["status"] for c in r["configs"].values() if not c["lever"]} == {"not_run"}


def test_the_budget_estimate_scales_a_measured_clip_by_denoising_work_and_by_pixels():
    from bench.gpu_report import ConfigResult, Estimates
    from ltx_ray.schema.profiles import LTX_2_0_DEV, LTX_2_0_DISTILLED

    def job(profile, **kw):
        return ManifestRow(job_id="e", prompt="p", num_frames=121, **kw).resolve(profile)

    ref_job = job(LTX_2_0_DISTILLED, width=768, height=512)
    ref = ConfigResult(name="r", model="ltx-2.0", recipe="distilled", size="768x512x121", status="ok", s_per_clip=5.0,
                       stage_seconds={"text_encode": 0.2, "denoise_1": 2.4, "vae_decode": 1.0, "mux": 1.0, "other": 0.4})
    estimates = Estimates("cuda")
    assert estimates.clip_s("ltx-2.0", ref_job) is None  # nothing measured: the first configuration runs
    estimates.measured("ltx-2.0", ref, ref_job, attention_tokens=48_000)
    assert estimates.clip_s("ltx-2.0", ref_job) == pytest.approx(5.0)
    # 40 guided steps of 4 passes against 8 distilled steps of 1: 20x the denoising, the rest as measured.
    assert estimates.clip_s("ltx-2.0", job(LTX_2_0_DEV, width=768, height=512)) == pytest.approx(0.6 + 2.4 * 20 + 2.0)
    # 1080p two-stage: 5.3x the pixels to decode and mux, and more than the token ratio to denoise (attention).
    pro = job(LTX_2_0_DISTILLED, preset="pro")
    assert estimates.clip_s("ltx-2.0", pro) > 0.6 + 2.0 * 1920 * 1088 / (768 * 512) + 2.4 * (8 * 8160 + 3 * 32640) / (8 * 6144)


@pytest.mark.e2e
def test_the_real_size_path_runs_at_the_twins_widths_on_the_cpu_and_rebuilds_the_transformer_a_lora_changed(tmp_path, capsys):
    """``--shrink``: the GPU path's code (components built in place, LTX2Engine(pipeline=...), a
    random LoRA written from the layer shapes, the transformer rebuilt after the LoRA) at twin widths."""
    from bench import gpu

    gpu.main(["--device", "cpu", "--models", "ltx-2.0", "--shrink", "--clips", "1", "--json", "--out", str(tmp_path),
              "--configs", "*256x160x9 lora,*guided*"])
    r = last_json_line(capsys.readouterr().out)
    lora, guided = r["configs"]["ltx-2.0 distilled 256x160x9 lora"], r["configs"]["ltx-2.0 guided 256x160x9"]
    assert lora["status"] == guided["status"] == "ok" and lora["profile"] == "ltx-2.0-distilled"
    assert r["models"]["ltx-2.0"]["random_weights"] is True and len(r["models"]["ltx-2.0"]["transformer_rebuilds_s"]) == 1
    # LTX-2.0 dev: 40 steps of CFG (batch 2) + STG + modality.
    assert guided["profile"] == "ltx-2.0-dev" and guided["steps"] == {"denoise_1": 40} and guided["passes_per_step"] == {"denoise_1": 4.0}


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


@pytest.mark.gpu
def test_the_gpu_benchmark_runs_real_size_ltx_2_0_distilled_on_the_card(tmp_path, capsys):
    from bench import gpu

    gpu.main(["--models", "ltx-2.0", "--configs", "ltx-2.0 distilled 768x512x121", "--clips", "1", "--json",
              "--out", str(tmp_path)])
    c = last_json_line(capsys.readouterr().out)["configs"]["ltx-2.0 distilled 768x512x121"]
    assert c["status"] == "ok" and c["s_per_clip"] > 0 and c["passes_per_step"] == {"denoise_1": 1.0}
    assert c["peak_gpu_gib"] > 35 and (c["mfu"] is None or 0 < c["mfu"] < 1)
    print(json.dumps(c, indent=1))


def test_a_model_that_does_not_load_fails_its_first_configuration_and_its_others_say_why_they_did_not_run(tmp_path, capsys):
    from bench import gpu

    gpu.main(["--device", "cpu", "--models", str(tmp_path / "no-such-model"), "--json", "--out", str(tmp_path / "clips")])
    configs = list(last_json_line(capsys.readouterr().out)["configs"].values())
    assert configs[0]["status"] == "failed" and "ModelNotFound" in configs[0]["reason"]
    rest = [c for c in configs[1:] if not c["lever"]]
    assert rest and all(c["status"] == "not_run" and "did not load: ModelNotFound" in c["reason"] for c in rest)
