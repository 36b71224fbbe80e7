"""Real checkpoints as shipped, shown on the architecture twins: the profile each layout is
detected as, the precision asked for, the official schedules and guidance passes, and the
stage-2 LoRA under its real name."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from ltx_ray.engine.twins import TWIN_GENERATIONS, resolve_twin
from ltx_ray.engine.weights import check_companions, resolve_model
from ltx_ray.errors import ModelNotFound
from ltx_ray.schema.fields import PRESETS
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.profiles import PROFILES, precision_problem
from ltx_ray.schema.schedules import DISTILLED_SIGMAS, STAGE_2_DISTILLED_SIGMAS, ltx2_dev_sigmas

pytestmark = pytest.mark.e2e  # builds (once, cached) the three twins

DETECTED = {"ltx-2.0": "ltx-2.0-dev", "ltx-2.3": "ltx-2.3-dev", "ltx-2.5": "ltx-2.5-distilled"}
SMALL = {"width": 64, "height": 64, "num_frames": 9}


@pytest.fixture(scope="module")
def twins(model_cache):
    return {g: resolve_twin(g) for g in TWIN_GENERATIONS}


@pytest.mark.parametrize("generation", TWIN_GENERATIONS)
def test_each_real_layout_is_detected_as_its_generation_from_its_configs(twins, generation):
    assert resolve_model(str(twins[generation])).profile.name == DETECTED[generation]


def test_a_dev_layout_with_a_non_shifting_scheduler_is_the_distilled_checkpoint(twins, tmp_path):
    folder = tmp_path / "ltx-2-distilled"
    shutil.copytree(twins["ltx-2.0"], folder)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_dynamic_shifting": False, "shift_terminal": None}))
    assert resolve_model(str(folder)).profile.name == "ltx-2.0-distilled"
    # The model card or --profile names another one.
    card = folder / "ltx_ray_model.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "profile": "ltx-2.3-distilled"}))
    assert resolve_model(str(folder)).profile.name == "ltx-2.3-distilled"
    assert resolve_model(str(folder), profile="ltx-2.4-dev").profile.image_crf == 18


def test_an_unknown_model_is_fatal_listing_the_profiles_and_the_card(twins, tmp_path):
    folder = tmp_path / "not-ltx"
    shutil.copytree(twins["ltx-2.0"], folder)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(ModelNotFound) as err:
        resolve_model(str(folder))
    assert "WanPipeline" in str(err.value) and "ltx-2.5-distilled" in str(err.value) and "ltx_ray_model.json" in str(err.value)
    with pytest.raises(ModelNotFound, match="no profile of that name"):
        resolve_model(str(twins["ltx-2.0"]), profile="ltx-9")


def test_the_official_recipe_values_per_generation():
    p = PROFILES
    assert (p["ltx-2.0-dev"].steps, p["ltx-2.0-dev"].stg_blocks, p["ltx-2.0-dev"].cross_timestep) == (40, [29], False)
    assert (p["ltx-2.3-dev"].steps, p["ltx-2.3-dev"].stg_blocks, p["ltx-2.3-dev"].cross_timestep) == (30, [28], True)
    assert [p[n].image_crf for n in ("ltx-2.0-dev", "ltx-2.3-dev", "ltx-2.4-dev", "ltx-2.5-full")] == [33, 33, 18, 18]
    assert p["ltx-2.0-dev"].audio.cfg == 7.0 and p["ltx-2.0-dev"].video.cfg == 3.0
    assert p["ltx-2.0-dev"].negative_prompt.startswith("has_subtitles, has_blurbox")
    for name in ("ltx-2.0-distilled", "ltx-2.3-distilled", "ltx-2.5-distilled"):
        assert p[name].video.is_off and p[name].audio.is_off and p[name].schedule == "distilled"


def test_the_dev_schedule_is_ltx2schedulers_fixed_shift_which_diffusers_matches_only_at_4096_tokens():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift

    real = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                           base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)

    def diffusers_sigmas(steps, tokens):
        real.set_timesteps(steps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=calculate_shift(tokens, 1024, 4096, 0.95, 2.05))
        return real.sigmas[:-1].tolist()

    assert ltx2_dev_sigmas(1) == [1.0]  # a one-step job (Serve allows it) has nothing to stretch
    for steps in (8, 30, 40):
        assert np.allclose(ltx2_dev_sigmas(steps), diffusers_sigmas(steps, 4096), atol=1e-6)
        assert ltx2_dev_sigmas(steps)[-1] == pytest.approx(0.1)
    # What the pipelines would do with the shipped config: shifted by the token count, NaN when large.
    assert not np.allclose(ltx2_dev_sigmas(40), diffusers_sigmas(40, 6144), atol=1e-3)  # 768x512x121
    assert all(math.isnan(s) for s in diffusers_sigmas(40, 63240))  # 1920x1088x241 one stage


@pytest.mark.parametrize("profile", [n for n in PROFILES if n != "tiny"])
def test_every_preset_and_length_up_to_4k_and_20_s_has_finite_strictly_decreasing_sigmas(profile):
    for preset in PRESETS:
        for seconds in (1, 5, 10, 20):
            job = ManifestRow(job_id="j", prompt="p", preset=preset, seconds=seconds).resolve(PROFILES[profile])
            for stage in job.stages:
                s = stage.sigmas
                assert all(math.isfinite(x) and 0 < x <= 1 for x in s), (preset, seconds, stage)
                assert all(a > b for a, b in zip(s, s[1:])), (preset, seconds, stage)
            assert job.stages[0].sigmas == (DISTILLED_SIGMAS if "distilled" in profile else ltx2_dev_sigmas(job.steps))
            if job.two_stage:
                assert job.stages[1].sigmas == STAGE_2_DISTILLED_SIGMAS and job.stages[1].transformer_passes_per_step == 1


def test_float16_on_bfloat16_trained_weights_is_refused_with_the_reason():
    assert "bfloat16" in precision_problem("float16", PROFILES["ltx-2.0-dev"])
    assert precision_problem("bfloat16", PROFILES["ltx-2.5-distilled"]) is None


def test_float16_is_a_fatal_error_before_any_row_runs(twins, tmp_path, capsys):
    from ltx_ray.cli import main
    from ltx_ray.storage.manifest import write_manifest

    write_manifest([{"job_id": "a", "prompt": "p", **SMALL}], str(tmp_path / "m.parquet"))
    code = main(["run", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "out"), "--model", str(twins["ltx-2.0"]),
                 "--dtype", "float16"])
    assert code == 2 and "use --dtype bfloat16" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results").exists()


def test_two_stage_without_the_real_stage_2_lora_is_fatal_naming_the_file(twins, tmp_path):
    folder = tmp_path / "no-lora"
    shutil.copytree(twins["ltx-2.0"], folder)
    (folder / "ltx-2-19b-distilled-lora-384.safetensors").unlink()
    model = resolve_model(str(folder))
    jobs = [ManifestRow(job_id="p", prompt="p", two_stage=True, **SMALL).resolve(model.profile)]
    with pytest.raises(ModelNotFound, match="ltx-2-19b-distilled-lora-384.safetensors"):
        check_companions(model, jobs)
    check_companions(resolve_model(str(twins["ltx-2.0"])), jobs)  # the twin ships it under that name


def count_passes(engine):
    """Batch items through the DiT per call: a CFG call carries 2 (cond + uncond)."""
    calls = []
    handle = engine._pipes["t2v"].transformer.register_forward_pre_hook(
        lambda _m, args, kwargs: calls.append((kwargs.get("hidden_states", args[0] if args else None)).shape[0]),
        with_kwargs=True,
    )
    return calls, handle


@pytest.mark.parametrize("generation", TWIN_GENERATIONS)
def test_each_twin_runs_in_bfloat16_with_its_profiles_sigmas_and_passes(twins, generation):
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins[generation]))
    engine = LTX2Engine(model.path, device="cpu", dtype="bfloat16", profile=model.profile)
    assert set(engine.component_dtypes.values()) == {"bfloat16"}, engine.component_dtypes
    assert {"transformer", "text_encoder", "vae", "audio_vae", "vocoder", "connectors"} <= set(engine.component_dtypes)
    steps = 8 if model.profile.schedule == "distilled" else 2
    job = ManifestRow(job_id="j", prompt="a fox", steps=steps, two_stage=True, **{**SMALL, "width": 128, "height": 128}
                      ).resolve(model.profile)
    calls, handle = count_passes(engine)
    try:
        clip = engine.generate(job, JobInputs())
    finally:
        handle.remove()
    assert np.isfinite(clip.frames.astype(np.float32)).all() and clip.frames.shape == (9, 128, 128, 3)
    first, second = clip.info["stages"]
    assert first["sigmas"] == job.stages[0].sigmas and second["sigmas"] == STAGE_2_DISTILLED_SIGMAS
    # Stage 1 costs the profile's passes per step, stage 2 one unguided pass per step.
    assert sum(calls) == first["steps"] * first["transformer_passes_per_step"] + second["steps"]
    expected_lora = {"ltx-2.0": "ltx-2-19b-distilled-lora-384.safetensors",
                     "ltx-2.3": "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", "ltx-2.5": None}[generation]
    assert clip.info["distilled_lora"] == expected_lora  # 2.5's transformer/ is distilled itself
    if generation == "ltx-2.5":
        assert first["transformer_passes_per_step"] == 1 and first["sigmas"] == DISTILLED_SIGMAS
    else:
        assert first["transformer_passes_per_step"] == 4  # cond + uncond (one batch of 2), STG, modality


@pytest.mark.parametrize("generation", TWIN_GENERATIONS)
def test_t2v_and_i2v_through_ltx_ray_give_the_frames_of_the_diffusers_recipe_called_directly(twins, generation):
    """Parity with the diffusers docs' examples (``docs/source/en/api/pipelines/ltx2.md``: text-to-video
    with ``LTX2Pipeline``, image-to-video with ``LTX2ImageToVideoPipeline`` and ``image=``):
    ``from_pretrained(...)(prompt, negative_prompt, width, height, num_frames, frame_rate, ...)``,
    every argument the docs leave to a default spelled out as the profile's recipe (sigmas
    instead of the docs' dynamic shift), fp32 on the CPU."""
    import torch
    from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline
    from PIL import Image

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins[generation]))
    p = model.profile
    steps = 8 if p.schedule == "distilled" else 2
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=p)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for task, pipeline, extra in [("t2v", LTX2Pipeline, {}), ("i2v", LTX2ImageToVideoPipeline, {"image": image})]:
        row = ManifestRow(job_id="j", prompt="a fox in the snow", steps=steps, seed=7, task=task,
                          image_uri="unused.png" if extra else None, **SMALL)
        check_parity(engine, row.resolve(p), JobInputs(**extra), pipeline.from_pretrained(model.path, dtype=torch.float32),
                     extra, task)


@pytest.mark.parametrize("generation", TWIN_GENERATIONS)
def test_two_stage_through_ltx_ray_gives_the_frames_of_the_diffusers_two_stage_recipe(twins, generation):
    """Parity with the diffusers docs' "Two-stages Generation" (dev + ``load_lora_weights`` of
    the stage-2 LoRA) and "Distilled checkpoint generation" examples: stage 1 at half size ->
    ``LTX2LatentUpsamplePipeline`` -> ``LTX2Pipeline(latents=, audio_latents=,
    noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], sigmas=STAGE_2_DISTILLED_SIGMA_VALUES)``.
    Spelled out where the docs leave a default: stage 2 unguided in every term (the docs pass
    only ``guidance_scale=1.0``, which leaves audio CFG, STG and modality on), and its noise
    from ``seed + 1`` (the docs' distilled example continues stage 1's generator, the dev one
    passes none). Audio: stage 2's on distilled models, stage 1's on dev models, as the official
    distilled.py and ti2vid_two_stages.py keep them."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel
    from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.stages import guidance_kwargs
    from ltx_ray.engine.stages import NO_GUIDANCE
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins[generation]))
    p = model.profile
    steps = 8 if p.schedule == "distilled" else 2
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=p)
    job = ManifestRow(job_id="j", prompt="a fox in the snow", steps=steps, seed=7, two_stage=True,
                      width=128, height=128, num_frames=9).resolve(p)
    clip = engine.generate(job, JobInputs())

    pipe = LTX2Pipeline.from_pretrained(model.path, dtype=torch.float32)
    common = dict(prompt="a fox in the snow", negative_prompt=p.negative_prompt, num_frames=9, frame_rate=p.fps,
                  max_sequence_length=p.max_sequence_length, spatio_temporal_guidance_blocks=p.stg_blocks,
                  use_cross_timestep=p.cross_timestep)
    sigmas = job.stages[0].sigmas
    with torch.inference_mode():
        stage1 = pipe(**common, **{k: v for k, v in guidance_kwargs(job).items() if k not in common},
                      width=64, height=64, sigmas=sigmas, num_inference_steps=len(sigmas),
                      generator=torch.Generator("cpu").manual_seed(7), output_type="latent")
        upsampler = LTX2LatentUpsamplerModel.from_pretrained(f"{model.path}/{p.upsampler}", torch_dtype=torch.float32)
        upscaled = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler)(
            latents=stage1.frames, output_type="latent").frames
        if p.distilled_lora:
            pipe.load_lora_weights(model.path, adapter_name="stage_2_distilled", weight_name=p.distilled_lora)
            pipe.set_adapters("stage_2_distilled", 1.0)
        # "Change scheduler to use Stage 2 distilled sigmas as is"
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            pipe.scheduler.config, use_dynamic_shifting=False, shift_terminal=None)
        stage2 = pipe(**common, **NO_GUIDANCE, latents=upscaled, audio_latents=stage1.audio, width=128, height=128,
                      noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], sigmas=STAGE_2_DISTILLED_SIGMA_VALUES,
                      num_inference_steps=len(STAGE_2_DISTILLED_SIGMA_VALUES),
                      generator=torch.Generator("cpu").manual_seed(8), output_type="np")
        if p.distilled_lora:
            mel = pipe.audio_vae.decode(stage1.audio, return_dict=False)[0]
            audio = pipe.vocoder(mel)[0].float().numpy()
        else:
            audio = stage2.audio[0].float().numpy()
    reference = (np.clip(stage2.frames[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    assert clip.frames.shape == reference.shape == (9, 128, 128, 3)
    assert clip.info["distilled_lora"] == p.distilled_lora
    diff = np.abs(clip.frames.astype(int) - reference.astype(int))
    audio_diff = np.abs(clip.audio - audio).max()
    if p.video.is_off:
        assert diff.max() == 0 and audio_diff == 0
    else:  # guided stage 1: float rounding of the same call, as in the one-stage parity
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
        assert audio_diff < 1e-5


def test_seconds_auto_on_25_gives_the_length_and_frames_of_the_pipelines_own_auto_duration(twins):
    """``seconds: auto`` follows the diffusers docs' LTX-2.5 auto-duration call (``num_frames``
    omitted, ``min_seconds`` / ``max_seconds``): the twin's head predicts 0.82 s for this prompt,
    so 0.5..2 s keeps it (17 frames, not the bound's 49) and 1.5..3 s clamps it up to 41."""
    import torch
    from diffusers import LTX2Pipeline

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins["ltx-2.5"]))
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile)
    pipe = LTX2Pipeline.from_pretrained(model.path, dtype=torch.float32)
    for low, high, frames in [(0.5, 2.0, 17), (1.5, 3.0, 41)]:
        row = ManifestRow(job_id="j", prompt="a fox in the snow", seed=7, width=64, height=64, seconds="auto",
                          min_seconds=low, max_seconds=high)
        job = row.resolve(model.profile)
        assert job.num_frames == round(high * 24) // 8 * 8 + 1  # planned and ordered at the longest it may be
        clip = check_parity(engine, job, JobInputs(), pipe, {}, "t2v",
                            length=dict(num_frames=None, min_seconds=low, max_seconds=high))
        assert clip.frames.shape[0] == frames
        assert clip.info["duration"] == {"seconds": "auto", "predicted_s": pytest.approx(0.822, abs=0.01),
                                         "min_seconds": low, "max_seconds": high, "num_frames": frames}


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # the decoder's CPU path
def test_decoder_diffusion_on_25_gives_the_frames_of_diffusers_diffusion_decode_pipeline(twins):
    """``decoder: diffusion`` decodes with LTX-2.5's ``diffusion_decoder/`` as diffusers'
    ``LTX2VideoDiffusionDecodePipeline`` does on ``output_type="latent"`` output
    (``denormalize=False``), its noise from ``seed + 2``; ``conv`` stays the VAE's frames."""
    import torch
    from diffusers import LTX2Pipeline, LTX2VideoDiffusionDecoderModel
    from diffusers.pipelines.ltx2 import LTX2VideoDiffusionDecodePipeline

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.stages import guidance_kwargs
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins["ltx-2.5"]))
    p = model.profile
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=p)
    # 96 px: the decoder's neighbourhood attention needs 3 latent cells a side.
    jobs = {d: ManifestRow(job_id="j", prompt="a fox in the snow", seed=7, decoder=d, width=96, height=96,
                           num_frames=9).resolve(p)
            for d in ("conv", "diffusion")}
    clips = {d: engine.generate(job, JobInputs()) for d, job in jobs.items()}
    pipe = LTX2Pipeline.from_pretrained(model.path, dtype=torch.float32)
    decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(model.path, subfolder="diffusion_decoder")
    sigmas = jobs["diffusion"].stages[0].sigmas
    with torch.inference_mode():
        latents = pipe(prompt="a fox in the snow", negative_prompt=p.negative_prompt, width=96, height=96, num_frames=9,
                       frame_rate=p.fps, sigmas=sigmas, num_inference_steps=len(sigmas), **guidance_kwargs(jobs["conv"]),
                       max_sequence_length=p.max_sequence_length, generator=torch.Generator("cpu").manual_seed(7),
                       output_type="latent").frames
        video = LTX2VideoDiffusionDecodePipeline(diffusion_decoder=decoder, scheduler=pipe.scheduler, vae=pipe.vae)(
            latents=latents, denormalize=False, output_type="np", generator=torch.Generator("cpu").manual_seed(9)).frames
    reference = (np.clip(video[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    assert clips["diffusion"].frames.shape == reference.shape == (9, 96, 96, 3)
    # Float rounding of the same call: identical on the revision-1 twin, 1 of 248,832 values one
    # level apart on revision 2 (its weights differ).
    diff = np.abs(clips["diffusion"].frames.astype(int) - reference.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (diff.max(), (diff > 0).mean())
    assert clips["diffusion"].info["decoder"] == "diffusion" and clips["conv"].info["decoder"] == "conv"
    assert np.abs(clips["conv"].frames.astype(int) - reference.astype(int)).max() > 10  # another decoder's frames


def test_enhance_prompt_gives_the_frames_of_the_diffusers_call_with_prompt_enhancement_enabled(twins, tmp_path):
    """Parity with the diffusers docs' "Prompt Enhancement" example (LTX-2.3, ``pipe.processor``
    set, ``enable_prompt_enhancement=True, system_prompt=T2V_DEFAULT_SYSTEM_PROMPT``), and its
    image-to-video twin (``I2V_DEFAULT_SYSTEM_PROMPT``, the enhancer looking at the image): the
    2.3 twin's Gemma 3 text encoder rewrites the prompt, through ``--enhancer``'s processor."""
    import torch
    from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.utils import I2V_DEFAULT_SYSTEM_PROMPT, T2V_DEFAULT_SYSTEM_PROMPT
    from PIL import Image
    from transformers import AutoProcessor

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.gemma_twins import make_enhancer_twin
    from ltx_ray.engine.types import JobInputs

    enhancer = make_enhancer_twin(tmp_path / "gemma-3-processor", "ltx-2.3")
    model = resolve_model(str(twins["ltx-2.3"]), enhancer=str(enhancer))
    assert model.enhancer == str(enhancer)
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile, enhancer=model.enhancer)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for task, pipeline, extra, system in [("t2v", LTX2Pipeline, {}, T2V_DEFAULT_SYSTEM_PROMPT),
                                          ("i2v", LTX2ImageToVideoPipeline, {"image": image}, I2V_DEFAULT_SYSTEM_PROMPT)]:
        row = ManifestRow(job_id="j", prompt="a fox in the snow", steps=2, seed=7, task=task, enhance_prompt=True,
                          image_uri="unused.png" if extra else None, **SMALL)
        pipe = pipeline.from_pretrained(model.path, dtype=torch.float32, processor=AutoProcessor.from_pretrained(enhancer))
        clip = check_parity(engine, row.resolve(model.profile), JobInputs(**extra), pipe,
                            {**extra, "enable_prompt_enhancement": True, "system_prompt": system}, task)
        rewritten = clip.info["enhanced_prompt"]
        assert rewritten and rewritten != "a fox in the snow", task  # a random Gemma writes noise, but writes
        assert clip.info["prompt_enhancement"] == {"original_prompt": "a fox in the snow", "enhancer": "text_encoder",
                                                   "system_prompt": f"{task.upper()}_DEFAULT_SYSTEM_PROMPT"}
        # The rewritten prompt is what the model was conditioned on: the plain prompt gives another video.
        plain = engine.generate(row.model_copy(update={"enhance_prompt": None}).resolve(model.profile), JobInputs(**extra))
        assert not np.array_equal(plain.frames, clip.frames), task


def test_enhance_prompt_without_an_enhancer_is_a_row_error_naming_the_column_and_the_fix(twins):
    from ltx_ray.storage.manifest import validate_rows

    for generation, needs in [("ltx-2.3", "google/gemma-3-12b-it-qat-q4_0-unquantized (its processor"),
                              ("ltx-2.5", "google/gemma-4-E2B-it (the Gemma 4 model and its processor")]:
        model = resolve_model(str(twins[generation]))
        assert model.enhancer is None  # the real repos ship no processor
        rows = [{"job_id": "e", "prompt": "p", "enhance_prompt": True, **SMALL}, {"job_id": "ok", "prompt": "p", **SMALL}]
        result = validate_rows([("m.parquet", rows)], model.profile, enhancer=False)
        assert [j.job_id for j in result.jobs] == ["ok"]
        (problem,) = result.invalid[0].problems
        assert (problem.field, problem.value) == ("enhance_prompt", "True")
        assert f"pass --enhancer with a local copy of {needs}" in problem.message
        assert "or set enhance_prompt false" in problem.message
    with pytest.raises(ModelNotFound, match="holds no processor"):
        resolve_model(str(twins["ltx-2.3"]), enhancer=str(twins["ltx-2.3"] / "transformer"))


def test_enhance_prompt_on_the_25_twin_gives_the_frames_of_the_diffusers_call_with_its_gemma_4_enhancer(twins, tmp_path):
    """Parity with the diffusers docs' "Prompt Enhancement for LTX-2.5": a separate
    google/gemma-4-E2B-it (``AutoModelForImageTextToText`` + ``AutoProcessor``) given to the
    pipeline as ``prompt_enhancer`` and ``processor``, ``enable_prompt_enhancement=True`` with
    the LTX-2.5 system prompts; t2v, and i2v with the enhancer looking at the image."""
    import torch
    from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.utils import LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT, LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ltx_ray.engine.gemma_twins import make_enhancer_twin
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs

    enhancer = make_enhancer_twin(tmp_path / "gemma-4-E2B-it", "ltx-2.5")
    with pytest.raises(ModelNotFound, match="holds a processor but no model"):  # a Gemma 3 processor is not enough
        resolve_model(str(twins["ltx-2.5"]), enhancer=str(make_enhancer_twin(tmp_path / "gemma-3", "ltx-2.3")))
    model = resolve_model(str(twins["ltx-2.5"]), enhancer=str(enhancer))
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile, enhancer=model.enhancer)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for task, pipeline, extra, system in [("t2v", LTX2Pipeline, {}, LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT),
                                          ("i2v", LTX2ImageToVideoPipeline, {"image": image}, LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT)]:
        row = ManifestRow(job_id="j", prompt="a fox in the snow", seed=7, task=task, enhance_prompt=True,
                          image_uri="unused.png" if extra else None, **SMALL)
        pipe = pipeline.from_pretrained(model.path, dtype=torch.float32, processor=AutoProcessor.from_pretrained(enhancer),
                                        prompt_enhancer=AutoModelForImageTextToText.from_pretrained(enhancer, dtype=torch.float32))
        clip = check_parity(engine, row.resolve(model.profile), JobInputs(**extra), pipe,
                            {**extra, "enable_prompt_enhancement": True, "system_prompt": system}, task)
        rewritten = clip.info["enhanced_prompt"]
        assert rewritten and rewritten != "a fox in the snow", task
        assert clip.info["prompt_enhancement"] == {"original_prompt": "a fox in the snow", "enhancer": "separate",
                                                   "system_prompt": f"LTX2_5_{task.upper()}_DEFAULT_SYSTEM_PROMPT"}
        plain = engine.generate(row.model_copy(update={"enhance_prompt": None}).resolve(model.profile), JobInputs(**extra))
        assert not np.array_equal(plain.frames, clip.frames), task


def test_a_variant_full_row_on_the_25_twin_runs_transformer_full_as_a_full_loaded_engine_would(twins):
    """LTX-2.5 ships both DiTs: a ``variant: full`` row on the distilled-loaded model runs
    ``transformer_full/`` with the full recipe, giving the frames of an engine loaded with
    ``--profile ltx-2.5-full``; the next distilled row is back on ``transformer/``."""
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs

    model = resolve_model(str(twins["ltx-2.5"]))
    assert model.profile.name == "ltx-2.5-distilled"
    engine = LTX2Engine(model.path, device="cpu", dtype="float32", profile=model.profile)
    row = ManifestRow(job_id="j", prompt="a fox in the snow", seed=7, **SMALL)
    full_row = row.model_copy(update={"variant": "full", "steps": 2})
    full_job = full_row.resolve(model.profile)
    assert (full_job.profile, full_job.steps, full_job.video_guidance.cfg) == ("ltx-2.5-full", 2, 3.0)
    before = engine.generate(row.resolve(model.profile), JobInputs())
    full = engine.generate(full_job, JobInputs())
    after = engine.generate(row.resolve(model.profile), JobInputs())
    assert (before.info["variant"], full.info["variant"]) == ("distilled", "full")
    assert np.array_equal(before.frames, after.frames) and not np.array_equal(before.frames, full.frames)
    full_model = resolve_model(str(twins["ltx-2.5"]), "ltx-2.5-full")
    loaded_full = LTX2Engine(full_model.path, device="cpu", dtype="float32", profile=full_model.profile)
    reference = loaded_full.generate(full_row.resolve(full_model.profile), JobInputs())
    assert np.array_equal(full.frames, reference.frames) and np.array_equal(full.audio, reference.audio)


def test_a_variant_on_a_single_checkpoint_generation_is_a_row_error_naming_the_column(twins):
    from ltx_ray.storage.manifest import validate_rows

    model = resolve_model(str(twins["ltx-2.3"]))
    rows = [{"job_id": "v", "prompt": "p", "variant": "full", **SMALL},
            {"job_id": "same", "prompt": "p", "variant": "distilled", **SMALL}]
    result = validate_rows([("m.parquet", rows)], model.profile)
    assert [r.job_id for r in result.invalid] == ["v", "same"]  # 2.3 dev: neither is its variant
    problem = result.invalid[0].problems[0]
    assert (problem.field, problem.value) == ("variant", "'full'")
    assert "only LTX-2.5 ships both DiTs" in problem.message and "leave variant empty" in problem.message
    on_25 = validate_rows([("m.parquet", rows)], resolve_model(str(twins["ltx-2.5"])).profile)
    assert [j.profile for j in on_25.jobs] == ["ltx-2.5-full", "ltx-2.5-distilled"] and not on_25.invalid


def check_parity(engine, job, inputs, pipe, extra: dict, task: str, length: dict | None = None):
    import torch

    p = engine.profile
    clip = engine.generate(job, inputs)
    with torch.inference_mode():
        out = pipe(
            **extra, prompt="a fox in the snow", negative_prompt=p.negative_prompt, width=64, height=64,
            **(length or {"num_frames": 9}),
            frame_rate=p.fps, sigmas=job.stages[0].sigmas, num_inference_steps=len(job.stages[0].sigmas),
            guidance_scale=p.video.cfg, stg_scale=p.video.stg, modality_scale=p.video.modality,
            guidance_rescale=p.video.rescale, audio_guidance_scale=p.audio.cfg, audio_stg_scale=p.audio.stg,
            audio_modality_scale=p.audio.modality, audio_guidance_rescale=p.audio.rescale,
            spatio_temporal_guidance_blocks=p.stg_blocks, use_cross_timestep=p.cross_timestep,
            max_sequence_length=p.max_sequence_length, generator=torch.Generator("cpu").manual_seed(7), output_type="np",
        )
    reference = (np.clip(out.frames[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    assert clip.frames.shape == reference.shape and reference.shape[1:] == (64, 64, 3)
    assert length is not None or reference.shape[0] == 9
    diff = np.abs(clip.frames.astype(int) - reference.astype(int))
    audio_diff = np.abs(clip.audio - out.audio[0].float().numpy()).max()
    if p.video.is_off and p.audio.is_off:
        assert diff.max() == 0 and audio_diff == 0, task  # the unguided (distilled) call: bit for bit
    else:
        # Guided (4 passes a step): measured 2-6 of 110,592 values one level apart and audio within
        # 2e-7, float rounding of the same call (a second direct call repeats itself exactly); a
        # recipe difference does not pass (tried: an empty negative prompt, CFG 2.5: off by up to 58, 18).
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (task, diff.max(), (diff > 0).mean())
        assert audio_diff < 1e-5, task
    return clip


@pytest.mark.parametrize("generation", ["ltx-2.0", "ltx-2.5"])
def test_one_real_width_block_runs_in_bfloat16_on_the_cpu_with_the_gpu_tests_inputs(model_cache, generation):
    """What the GPU test runs at 48 layers, on the CPU at one: the real 2.0 / 2.5 widths, bf16, finite."""
    import torch
    from diffusers import LTX2VideoTransformer3DModel

    from ltx_ray.engine.twins import REAL_CONFIGS
    from tests.test_gpu import real_size_pass_inputs

    config = {**json.loads((REAL_CONFIGS / generation / "transformer.json").read_text()), "num_layers": 1}
    torch.set_default_dtype(torch.bfloat16)
    try:
        dit = LTX2VideoTransformer3DModel.from_config(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    kwargs = real_size_pass_inputs(generation, config, 256, 256, 9, "cpu", torch.bfloat16)
    assert kwargs["encoder_hidden_states"].shape[-1] == (3840 if generation == "ltx-2.0" else 4096)
    with torch.inference_mode():
        out = dit(**kwargs)
    video = out[0] if isinstance(out, tuple) else out.sample
    assert video.shape == (1, 128, 128) and video.dtype == torch.bfloat16 and torch.isfinite(video).all()
