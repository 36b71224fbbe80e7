"""Architecture twins look like their real LTX-2 generation on disk and run through diffusers.

Each twin is built once per session (resolve_twin into the test cache) and loaded once per
module; every generation call is fp32 on the CPU, unguided, with explicit sigmas.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ltx_ray.engine.twins import REAL_CONFIGS, TWIN_GENERATIONS, make_twin, resolve_twin, write_twin_loras

pytestmark = pytest.mark.e2e

PROMPT = "a red fox walks through a snowy forest at dawn"
UNGUIDED = dict(
    guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0,
    audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0,
    sigmas=[1.0, 0.5], max_sequence_length=128,  # 2 steps; the connectors' 128 registers divide it
)

# What tells the generations apart in model_index.json.
CLASSES = {
    "ltx-2.0": {"text_encoder": "Gemma3ForConditionalGeneration", "vocoder": "LTX2Vocoder", "duration_head": None},
    "ltx-2.3": {"text_encoder": "Gemma3ForConditionalGeneration", "vocoder": "LTX2VocoderWithBWE", "duration_head": None},
    "ltx-2.5": {"text_encoder": "Gemma4UnifiedForConditionalGeneration", "vocoder": "LTX2VocoderWithBWE",
                "duration_head": "LTX2DurationHead"},
}
# Files and folders beside the model_index components, under the real repos' names.
COMPANIONS = {
    "ltx-2.0": ["ltx-2-19b-distilled-lora-384.safetensors", "latent_upsampler"],
    "ltx-2.3": ["ltx-2.3-22b-distilled-lora-384-1.1.safetensors", "latent_upsampler"],
    "ltx-2.5": ["ltx-2.5-22b-distilled-lora-450-bf16.safetensors", "latent_upsampler", "transformer_full",
                "diffusion_decoder"],
}
# The real scheduler each repo ships: dev for 2.0 / 2.3, distilled for 2.5.
SCHEDULER = {
    "ltx-2.0": {"use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05, "shift_terminal": 0.1},
    "ltx-2.3": {"use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05, "shift_terminal": 0.1},
    "ltx-2.5": {"use_dynamic_shifting": False, "base_shift": 0.95, "max_shift": 2.05, "shift_terminal": None},
}
# The only keys a twin may change in a real config: widths and depths (and, for the 2.5
# diffusion decoder, its attention windows; see engine/twins.py).
_DIT = {"num_layers", "num_attention_heads", "attention_head_dim", "cross_attention_dim", "audio_num_attention_heads",
        "audio_attention_head_dim", "audio_cross_attention_dim", "in_channels", "out_channels", "audio_in_channels",
        "audio_out_channels"}
_CONNECTORS = {"caption_channels", "text_proj_in_factor", "video_connector_num_attention_heads",
               "video_connector_attention_head_dim", "video_connector_num_layers", "audio_connector_num_attention_heads",
               "audio_connector_attention_head_dim", "audio_connector_num_layers"}
_VAE = {"latent_channels", "block_out_channels", "decoder_block_out_channels", "layers_per_block",
        "decoder_layers_per_block"}
_COMMON = {"audio_vae": {"base_channels", "latent_channels", "num_res_blocks"},
           "latent_upsampler": {"in_channels", "mid_channels", "num_blocks_per_stage"}, "vae": _VAE, "scheduler": set()}
SHRUNK_KEYS = {
    "ltx-2.0": {**_COMMON, "transformer": _DIT | {"caption_channels"}, "connectors": _CONNECTORS,
                "vocoder": {"hidden_channels"}},
    "ltx-2.3": {**_COMMON, "transformer": _DIT, "connectors": _CONNECTORS | {"video_hidden_dim", "audio_hidden_dim"},
                "vocoder": {"hidden_channels", "bwe_hidden_channels"}},
    "ltx-2.5": {**_COMMON, "transformer": _DIT, "transformer_full": _DIT,
                "connectors": _CONNECTORS | {"video_hidden_dim", "audio_hidden_dim"},
                "vocoder": {"hidden_channels", "bwe_hidden_channels"},
                "duration_head": {"video_cross_attention_dim", "audio_cross_attention_dim", "pooler_hidden_dim",
                                  "mlp_hidden_dim"},
                "diffusion_decoder": {"latent_channels", "decoder_head_dim", "decoder_stage_channels",
                                      "decoder_stage_depths", "decoder_t_emb_dim", "decoder_stage_kernels",
                                      "decoder_stage5_kernel"}},
}
OUTPUT_RATE = {"ltx-2.0": 24000, "ltx-2.3": 48000, "ltx-2.5": 48000}


@pytest.fixture(scope="module")
def twins(model_cache) -> dict[str, Path]:
    return {gen: resolve_twin(gen) for gen in TWIN_GENERATIONS}


@pytest.fixture(scope="module")
def pipes(twins):
    from diffusers import LTX2Pipeline

    return {gen: LTX2Pipeline.from_pretrained(path, dtype=torch.float32) for gen, path in twins.items()}


@pytest.fixture(scope="module")
def loras(twins, tmp_path_factory) -> dict[str, dict[str, Path]]:
    out = tmp_path_factory.mktemp("twin-loras")
    return {gen: write_twin_loras(path, out) for gen, path in twins.items()}


def real(gen: str, name: str) -> dict:
    return json.loads((REAL_CONFIGS / gen / f"{name}.json").read_text())


def generate(pipe, **kwargs):
    return pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **UNGUIDED, **kwargs)


@pytest.mark.parametrize("gen", TWIN_GENERATIONS)
def test_each_twin_has_its_generations_components_companion_files_and_scheduler(twins, gen):
    path = twins[gen]
    index = json.loads((path / "model_index.json").read_text())
    assert index == real(gen, "model_index")
    assert index["_class_name"] == "LTX2Pipeline" and index["tokenizer"] == ["transformers", "GemmaTokenizer"]
    for component, cls in CLASSES[gen].items():
        assert index[component][1] == cls, component
    for component, entry in index.items():
        if not component.startswith("_") and entry[1] is not None:
            assert (path / component).is_dir(), component
    for name in COMPANIONS[gen]:
        assert (path / name).exists(), name
    assert not (path / "loras").exists()  # the twin keeps the real layout; test LoRAs live elsewhere
    scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    assert {k: scheduler[k] for k in SCHEDULER[gen]} == SCHEDULER[gen]
    card = json.loads((path / "ltx_ray_model.json").read_text())
    assert card == {"model_id": f"ltx-ray/twin-{gen}", "revision": card["revision"], "seed": 0}


@pytest.mark.parametrize("gen", TWIN_GENERATIONS)
def test_every_component_config_is_the_real_one_but_for_its_declared_shrunk_keys(twins, gen):
    found = {}
    for config in [*twins[gen].glob("*/config.json"), twins[gen] / "scheduler" / "scheduler_config.json"]:
        component = config.parent.name
        if component == "text_encoder":
            continue  # transformers config; the real Gemma configs are not known (real_configs/README.md)
        name = {"scheduler": "scheduler_distilled" if gen == "ltx-2.5" else "scheduler_dev",
                "transformer_full": "transformer"}.get(component, component)
        ours, theirs = json.loads(config.read_text()), real(gen, name)
        found[component] = {k for k in ours.keys() | theirs.keys() if ours.get(k, "<absent>") != theirs.get(k, "<absent>")}
    assert found == SHRUNK_KEYS[gen]


@pytest.mark.parametrize("gen", TWIN_GENERATIONS)
@pytest.mark.parametrize("width,height,num_frames", [(64, 64, 9), (128, 96, 17)])
def test_each_twin_generates_the_asked_frames_and_audio_as_long_as_the_video(pipes, gen, width, height, num_frames):
    pipe = pipes[gen]
    assert (pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio) == (32, 8)
    with torch.inference_mode():
        out = generate(pipe, width=width, height=height, num_frames=num_frames, frame_rate=24.0, output_type="np")
    assert out.frames.shape == (1, num_frames, height, width, 3) and np.isfinite(out.frames).all()
    rate = pipe.vocoder.config.output_sampling_rate
    assert rate == OUTPUT_RATE[gen] and out.audio.shape[:2] == (1, 2)
    # The pipeline makes round(seconds x 25) audio latents, and the causal audio VAE decodes L
    # latents to 4L - 3 mel frames of 10 ms (hop 160 at 16 kHz): the vocoder then upsamples
    # each mel hop to exactly hop x rate / 16 kHz samples.
    hop_s = 160 / 16000
    mel_frames = 4 * round(num_frames / 24.0 * 25) - 3
    assert out.audio.shape[2] == round(mel_frames * hop_s * rate)
    assert abs(out.audio.shape[2] / rate - num_frames / 24.0) <= 5 * hop_s


def test_the_25_duration_head_chooses_the_length_on_the_8k_plus_1_grid(pipes):
    from diffusers.pipelines.ltx2 import LTX2DurationHead

    pipe = pipes["ltx-2.5"]
    assert isinstance(pipe.duration_head, LTX2DurationHead)
    with torch.inference_mode():
        out = generate(pipe, width=64, height=64, num_frames=None, min_seconds=0.5, max_seconds=2.0, output_type="np")
        embeds, mask, _, _ = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=128)
        video_tokens, audio_tokens, _ = pipe.connectors(embeds, mask, padding_side="left")
        predicted = pipe.duration_head.predict_num_frames(
            video_tokens, audio_tokens, frame_rate=24.0, temporal_compression_ratio=8, min_seconds=0.5, max_seconds=2.0
        )
    frames = out.frames.shape[1]
    assert frames == predicted and frames % 8 == 1 and 0.5 * 24 <= frames <= 2.0 * 24


def test_without_a_duration_head_an_omitted_length_is_121_frames(pipes):
    with torch.inference_mode():
        out = generate(pipes["ltx-2.3"], width=64, height=64, num_frames=None, output_type="latent")
    assert (out.frames.shape[2] - 1) * 8 + 1 == 121


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # its CPU path
def test_the_25_diffusion_decoder_decodes_the_twins_latents_to_frames(twins, pipes):
    from diffusers import LTX2VideoDiffusionDecoderModel
    from diffusers.pipelines.ltx2 import LTX2VideoDiffusionDecodePipeline

    pipe = pipes["ltx-2.5"]
    decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(twins["ltx-2.5"], subfolder="diffusion_decoder")
    assert (decoder.spatial_compression_ratio, decoder.temporal_compression_ratio) == (32, 8)
    decode = LTX2VideoDiffusionDecodePipeline(diffusion_decoder=decoder, scheduler=pipe.scheduler, vae=pipe.vae)
    with torch.inference_mode():
        latents = generate(pipe, width=96, height=96, num_frames=9, output_type="latent").frames
        # output_type="latent" already applied the latent statistics: denormalize=False.
        video = decode(latents=latents, denormalize=False, output_type="np", generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 9, 96, 96, 3) and np.isfinite(video.frames).all()


def test_the_25_full_transformer_is_a_second_dit_that_the_pipeline_runs_when_passed(twins):
    from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

    distilled = LTX2VideoTransformer3DModel.from_pretrained(twins["ltx-2.5"], subfolder="transformer")
    full = LTX2VideoTransformer3DModel.from_pretrained(twins["ltx-2.5"], subfolder="transformer_full")
    assert dict(full.config) | {"_name_or_path": None} == dict(distilled.config) | {"_name_or_path": None}
    assert not torch.equal(full.proj_in.weight, distilled.proj_in.weight)
    pipe = LTX2Pipeline.from_pretrained(twins["ltx-2.5"], transformer=full, dtype=torch.float32)
    with torch.inference_mode():
        out = generate(pipe, width=64, height=64, num_frames=9, output_type="latent")
    assert out.frames.shape == (1, 16, 2, 2, 2)


@pytest.mark.parametrize("gen", TWIN_GENERATIONS)
def test_a_twins_loras_load_onto_its_own_pipeline_and_change_the_video(twins, loras, gen):
    from diffusers import LTX2Pipeline
    from safetensors import safe_open

    for name, path in {**loras[gen], "distilled": twins[gen] / COMPANIONS[gen][0]}.items():
        with safe_open(str(path), "pt") as f:
            assert f.metadata()["ltx_generation"] == gen, name
            assert name.startswith("ic-") == ("reference_downscale_factor" in f.metadata()), name
            assert all(f.get_tensor(k).abs().sum() > 0 for k in f.keys() if "lora_B" in k), name  # random, not zero
    pipe = LTX2Pipeline.from_pretrained(twins[gen], dtype=torch.float32)
    with torch.inference_mode():
        base = generate(pipe, width=64, height=64, num_frames=9, output_type="latent").frames
    for name, path in loras[gen].items():
        pipe.load_lora_weights(str(path), adapter_name=name.replace("-", "_"))
    pipe.load_lora_weights(str(twins[gen] / COMPANIONS[gen][0]), adapter_name="distilled")
    pipe.set_adapters(["style"], [1.0])
    with torch.inference_mode():
        styled = generate(pipe, width=64, height=64, num_frames=9, output_type="latent").frames
    assert not torch.allclose(base, styled)


@pytest.mark.parametrize("lora_gen,dit_gen", [("ltx-2.0", "ltx-2.3"), ("ltx-2.0", "ltx-2.5"), ("ltx-2.3", "ltx-2.0"),
                                              ("ltx-2.5", "ltx-2.0")])
def test_a_lora_does_not_load_onto_a_dit_of_the_other_modulation_width(twins, loras, lora_gen, dit_gen):
    from diffusers import LTX2VideoTransformer3DModel

    dit = LTX2VideoTransformer3DModel.from_pretrained(twins[dit_gen], subfolder="transformer")
    # cross_attn_mod (2.3+) gives the AdaLN 9 modulation vectors instead of 6.
    with pytest.raises(RuntimeError, match=r"size mismatch for time_embed\.linear\.lora_B"):
        dit.load_lora_adapter(str(loras[lora_gen]["style"]), prefix="transformer", adapter_name="other")


def test_23_and_25_loras_fit_each_others_dit_so_only_their_metadata_tells_them_apart(twins, loras):
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors import safe_open

    for lora_gen, dit_gen in [("ltx-2.3", "ltx-2.5"), ("ltx-2.5", "ltx-2.3")]:
        dit = LTX2VideoTransformer3DModel.from_pretrained(twins[dit_gen], subfolder="transformer")
        dit.load_lora_adapter(str(loras[lora_gen]["style"]), prefix="transformer", adapter_name="other")
        assert "other" in dit.peft_config  # peft accepts it: same modules, same shapes
        with safe_open(str(loras[lora_gen]["style"]), "pt") as f:
            assert f.metadata()["ltx_generation"] == lora_gen != dit_gen


def test_a_twin_is_built_once_and_then_read_from_the_cache(twins):
    card = twins["ltx-2.3"] / "ltx_ray_model.json"
    before = card.stat().st_mtime_ns
    assert resolve_twin("ltx-2.3") == twins["ltx-2.3"] and card.stat().st_mtime_ns == before
    assert twins["ltx-2.3"].parent.name == "models" and twins["ltx-2.3"].name.startswith("twin-ltx-2.3-r")


def test_an_unknown_generation_is_refused_with_the_known_ones_named(tmp_path):
    with pytest.raises(ValueError, match=r"ltx-2\.4.*ltx-2\.0, ltx-2\.3, ltx-2\.5"):
        make_twin(tmp_path / "twin", like="ltx-2.4")


def test_make_tiny_model_like_writes_that_generations_twin(tmp_path, capsys):
    from ltx_ray.cli import main

    assert main(["make-tiny-model", str(tmp_path / "twin"), "--like", "ltx-2.0", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "twin")
    index = json.loads((tmp_path / "twin" / "model_index.json").read_text())
    assert index["vocoder"] == ["ltx2", "LTX2Vocoder"] and (tmp_path / "twin" / COMPANIONS["ltx-2.0"][0]).is_file()
    assert json.loads((tmp_path / "twin" / "ltx_ray_model.json").read_text())["seed"] == 3
    assert not (tmp_path / "twin.partial").exists()


@pytest.fixture(scope="module")
def run_on_25(ray_local, twins, loras, tmp_path_factory):
    """One `ltx-ray run` on the 2.5 twin: row LoRAs of each generation, `seconds` as a string
    column holding `auto` and a number, the diffusion decoder, and enhance_prompt without --enhancer."""
    import pyarrow.parquet as pq
    from safetensors.torch import load_file, save_file

    from ltx_ray.cli import main
    from ltx_ray.storage.manifest import write_manifest

    tmp = tmp_path_factory.mktemp("run-25")
    # A 2.0 LoRA without its metadata: only its shapes tell it is not for a 2.5 DiT.
    untagged = tmp / "someones-2.0-lora.safetensors"
    save_file(load_file(str(loras["ltx-2.0"]["style"])), str(untagged))
    small = {"width": 64, "height": 64, "num_frames": 9, "seed": 1}
    rows = [{"job_id": "own", "prompt": "a lamp", "loras": [{"uri": str(loras["ltx-2.5"]["style"]), "scale": 1.0}], **small},
            {"job_id": "tagged-2.3", "prompt": "a lamp", "loras": [{"uri": str(loras["ltx-2.3"]["style"]), "scale": 1.0}],
             **small},
            {"job_id": "untagged-2.0", "prompt": "a lamp", "loras": [{"uri": str(untagged), "scale": 1.0}], **small},
            {"job_id": "plain", "prompt": "a lamp", "loras": [], **small}]
    # The twin's head predicts 0.82 s for this prompt: kept by 0.5..2 s, clamped up by 1.5..3 s.
    timed = {"width": 64, "height": 64, "seed": 1, "prompt": "a lamp"}
    rows += [{"job_id": "auto", "seconds": "auto", "min_seconds": 0.5, "max_seconds": 2.0, **timed},
             {"job_id": "auto-clamped", "seconds": "auto", "min_seconds": 1.5, "max_seconds": 3.0, **timed},
             {"job_id": "fixed", "seconds": "0.75", **timed},
             {"job_id": "diffused", "prompt": "a lamp", "decoder": "diffusion", "width": 96, "height": 96,
              "num_frames": 9, "seed": 1},
             {"job_id": "enhanced", "prompt": "a lamp", "enhance_prompt": True, **small}]
    write_manifest(rows, str(tmp / "m.parquet"))
    assert pq.read_schema(tmp / "m.parquet").field("seconds").type == "string"
    out = tmp / "out"
    code = main(["run", str(tmp / "m.parquet"), "--out", str(out), "--model", str(twins["ltx-2.5"])])
    results = {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}
    return code, out, results, untagged


def test_a_row_lora_made_for_another_generation_fails_its_row_naming_the_lora_and_generation(run_on_25, loras):
    code, out, results, untagged = run_on_25
    assert code == 1  # rows failed, the run went on
    assert {j for j, r in results.items() if r["status"] == "succeeded"} == {"own", "plain", "auto", "auto-clamped", "fixed",
                                                                            "diffused"}
    tagged, shapes = results["tagged-2.3"], results["untagged-2.0"]
    assert tagged["error_stage"] == shapes["error_stage"] == "generate"
    assert str(loras["ltx-2.3"]["style"]) in tagged["error"] and "made for ltx-2.3" in tagged["error"]
    assert "loaded model is ltx-2.5" in tagged["error"] and "use a LoRA trained for ltx-2.5" in tagged["error"]
    assert str(untagged) in shapes["error"] and "do not fit this ltx-2.5 transformer" in shapes["error"]
    assert "time_embed.linear" in shapes["error"]  # the first tensor that does not fit
    assert not (out / "tagged-2.3.mp4").exists() and not (out / "untagged-2.0.mp4").exists()
    assert (out / "own.mp4").is_file() and (out / "plain.mp4").is_file()


def test_seconds_auto_lets_the_25_duration_head_choose_the_length_recorded_in_the_results_and_sidecar(run_on_25):
    import av

    _, out, results, _ = run_on_25
    for job_id, frames in [("auto", 17), ("auto-clamped", 41), ("fixed", 17)]:
        row = results[job_id]
        with av.open(str(out / f"{job_id}.mp4")) as f:
            assert f.streams.video[0].frames == frames, job_id
        assert (row["num_frames"], row["duration_s"]) == (frames, pytest.approx(frames / 24, abs=0.01)), job_id
    duration = json.loads((out / "auto-clamped.json").read_text())["generation"]["duration"]
    assert duration == {"seconds": "auto", "predicted_s": pytest.approx(0.822, abs=0.01), "min_seconds": 1.5,
                        "max_seconds": 3.0, "num_frames": 41}
    assert "duration" not in json.loads((out / "fixed.json").read_text())["generation"]


def test_decoder_diffusion_writes_the_25_diffusion_decoders_video_and_says_so(run_on_25):
    import av

    _, out, results, _ = run_on_25
    assert results["diffused"]["status"] == "succeeded"
    with av.open(str(out / "diffused.mp4")) as f:
        assert (f.streams.video[0].frames, f.streams.video[0].width) == (9, 96)
    assert json.loads((out / "diffused.json").read_text())["generation"]["decoder"] == "diffusion"
    assert json.loads((out / "plain.json").read_text())["generation"]["decoder"] == "conv"


def test_enhance_prompt_on_the_25_twin_without_enhancer_fails_its_row_naming_the_gemma_4_it_needs(run_on_25):
    _, out, results, _ = run_on_25
    row = results["enhanced"]
    assert (row["status"], row["error_stage"]) == ("failed", "validate")
    assert "enhance_prompt" in row["error"] and "--enhancer with a local copy of google/gemma-4-E2B-it" in row["error"]
    assert not (out / "enhanced.mp4").exists()


@pytest.mark.parametrize("gen", TWIN_GENERATIONS)
def test_every_task_runs_on_each_twin_in_bfloat16_and_the_sidecar_shows_bf16_for_every_component(twins, loras, gen,
                                                                                                 tmp_path):
    """What a replica runs (``build_runner``: engine, inputs, mux, sidecar, results row) for each
    task, on each generation's twin in its real layout, with ``--dtype bfloat16``."""
    import av
    import numpy as np

    from ltx_ray.job.build import RunnerSpec, build_runner
    from ltx_ray.schema.manifest import ManifestRow
    from ltx_ray.storage.mux import write_mp4
    from tests.test_tasks_e2e import sweep, write_wav

    frames = np.full((17, 64, 64, 3), 30, np.uint8)
    for i in range(17):
        frames[i, 16:48, 3 * i : 3 * i + 16] = (220, 180, 40)
    write_mp4(tmp_path / "clip.mp4", frames, 24.0, None, None)
    write_wav(tmp_path / "voice.wav", sweep(0.5, 44100), 44100)
    from PIL import Image

    for name, color in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
        Image.new("RGB", (64, 64), color).save(tmp_path / f"{name}.png")
    runner = build_runner(RunnerSpec(model=str(twins[gen]), out=str(tmp_path / "out"), dtype="bfloat16", run_id="bf16"))
    profile = runner.model.profile
    small = {"width": 64, "height": 64, "seed": 1, **({} if profile.schedule == "distilled" else {"steps": 2})}
    rows = {
        "t2v": {"num_frames": 9},
        "i2v": {"image_uri": str(tmp_path / "a.png"), "num_frames": 9},
        "keyframes": {"keyframes": [{"uri": str(tmp_path / "a.png"), "frame": 0}, {"uri": str(tmp_path / "b.png"),
                                                                                  "frame": 8}], "num_frames": 9},
        "v2v": {"video_uri": str(tmp_path / "clip.mp4"), "strength": 0.7, "num_frames": 9},
        "extend": {"task": "extend", "video_uri": str(tmp_path / "clip.mp4"), "num_frames": 9},
        "a2v": {"audio_uri": str(tmp_path / "voice.wav")},
        "control": {"control": "depth", "control_uri": str(tmp_path / "clip.mp4"), "ic_lora": str(loras[gen]["ic-depth"]),
                    "num_frames": 9},
        "retake": {"video_uri": str(tmp_path / "clip.mp4"), "start_s": 0.2, "end_s": 0.4},  # the 17-frame clip's size
    }
    for task, extra in rows.items():
        job = ManifestRow.model_validate({"job_id": task, "prompt": "a lamp", **small, **extra}).resolve(profile)
        assert job.task == task
        result = runner.run(job)
        assert result.status == "succeeded", (gen, task, result.error_stage, result.error)
        with av.open(str(tmp_path / "out" / f"{task}.mp4")) as f:
            assert f.streams.video[0].codec_context.name == "h264" and f.streams.audio[0].codec_context.name == "aac"
        sidecar = json.loads((tmp_path / "out" / f"{task}.json").read_text())
        assert sidecar["dtype"] == "bfloat16"
        dtypes = sidecar["model"]["component_dtypes"]
        assert set(dtypes.values()) == {"bfloat16"} and {"transformer", "text_encoder", "vae", "audio_vae", "vocoder",
                                                           "connectors"} <= set(dtypes), (gen, dtypes)
