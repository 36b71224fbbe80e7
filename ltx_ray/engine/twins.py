"""Architecture twins: tiny random LTX-2.0, LTX-2.3 and LTX-2.5 in each generation's real layout.

The tiny model (``tiny_model.py``) is one generic LTX-2. A twin is one *generation*: every
component config is the real one (``real_configs/<generation>/``, written from diffusers'
``scripts/convert_ltx2_to_diffusers.py``) with only widths and depths shrunk, saved in the
folder layout the real diffusers repo has, so code that tells generations apart, or that
looks for a generation's companion files, can be tested on a laptop.

What a twin keeps real:
- ``model_index.json``: the pipeline class and each component's class (Gemma 3 or Gemma 4
  text encoder, ``LTX2Vocoder`` or ``LTX2VocoderWithBWE``, the 2.5 ``duration_head``);
- every flag and geometry key of every component config: gated attention, cross-attention
  modulation, perturbed attention, prompt embeddings, per-modality projections, ``ff_bias``,
  keyframe position embeddings, ``rope_type``; VAE 32x / 8x compression and its up/down
  block types; audio VAE 16 kHz, hop 160, 4x mel / 4x time compression, 64 mel bins;
  vocoder upsampling (24 kHz for 2.0; 16 kHz then bandwidth extension to 48 kHz for 2.3 /
  2.5), so the audio lasts as long as the video; the scheduler config the repo ships;
- the companion files under their real names (root stage-2 LoRA, ``latent_upsampler/``;
  2.5: ``transformer_full/`` and ``diffusion_decoder/``).
``SHRUNK`` lists every key a twin changes; tests/test_twins.py checks that nothing else differs.

Not real, and why:
- the text encoders: only their classes and model types are known (``real_configs/README.md``);
  their sizes are as small as the connectors allow;
- the 2.5 diffusion decoder's neighborhood-attention windows (see ``_DIFFUSION_DECODER``);
- weights: random, the vocoder's STFT / mel buffers included (zeros: they come from a checkpoint);
- the LoRAs cover every linear layer of the DiT (the real files' target modules are unknown),
  so a 2.0 LoRA does not fit a 2.3 / 2.5 DiT (different modulation widths). 2.3 and 2.5 DiTs
  have the same modules and shapes: only the ``ltx_generation`` metadata tells their LoRAs apart.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from ltx_ray.engine.gemma_twins import TEXT_HIDDEN, TEXT_LAYERS, build_gemma4_text_encoder, build_gemma_tokenizer
from ltx_ray.engine.tiny_model import CARD_NAME, build_gemma3_text_encoder, publish_dir, write_lora

TWIN_GENERATIONS = ("ltx-2.0", "ltx-2.3", "ltx-2.5")
# Bumped whenever a twin's architecture or files change, so cached copies are rebuilt.
TWIN_REVISION = "2"
REAL_CONFIGS = Path(__file__).with_name("real_configs")

# Tiny widths shared by every generation (real values in the comments); the text encoder's are
# in gemma_twins (TEXT_HIDDEN, TEXT_LAYERS).
VIDEO_WIDTH = 32  # transformer video inner dim = heads x head_dim: 32 x 128 = 4096
AUDIO_WIDTH = 16  # transformer audio inner dim: 32 x 64 = 2048
LATENT_CHANNELS = 16  # video VAE latent channels: 128
AUDIO_LATENT_CHANNELS = 2  # audio VAE latent channels: 8
AUDIO_PACKED = AUDIO_LATENT_CHANNELS * 64 // 4  # x the real 64 mel bins / 4x mel compression: 32 (real 128)

_TRANSFORMER = {
    "num_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": VIDEO_WIDTH // 2,
    "cross_attention_dim": VIDEO_WIDTH,  # the video connector's output width
    "audio_num_attention_heads": 2,  # equal to the video heads, as in the real model (the
    "audio_attention_head_dim": AUDIO_WIDTH // 2,  # a2v rope splits the audio width by them)
    "audio_cross_attention_dim": AUDIO_WIDTH,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "audio_in_channels": AUDIO_PACKED,
    "audio_out_channels": AUDIO_PACKED,
}
_CONNECTORS_20 = {  # per_modality_projections=False: both connectors run at the text width
    "caption_channels": TEXT_HIDDEN,
    "text_proj_in_factor": TEXT_LAYERS + 1,
    "video_connector_num_attention_heads": 2,  # 30 x 128 = 3840 = caption_channels
    "video_connector_attention_head_dim": TEXT_HIDDEN // 2,
    "video_connector_num_layers": 1,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": TEXT_HIDDEN // 2,
    "audio_connector_num_layers": 1,
}
_CONNECTORS_23 = {  # per_modality_projections=True: each connector runs at its DiT width
    "caption_channels": TEXT_HIDDEN,
    "text_proj_in_factor": TEXT_LAYERS + 1,
    "video_hidden_dim": VIDEO_WIDTH,
    "audio_hidden_dim": AUDIO_WIDTH,
    "video_connector_num_attention_heads": 2,  # 32 x 128 = 4096 = video_hidden_dim
    "video_connector_attention_head_dim": VIDEO_WIDTH // 2,
    "video_connector_num_layers": 1,
    "audio_connector_num_attention_heads": 2,  # 32 x 64 = 2048 = audio_hidden_dim
    "audio_connector_attention_head_dim": AUDIO_WIDTH // 2,
    "audio_connector_num_layers": 1,
}
_AUDIO_VAE = {
    # base_channels must equal the packed latent width (latent_channels x mel_bins / 4): the
    # latent statistics have base_channels entries and are applied to packed audio latents.
    "base_channels": AUDIO_PACKED,
    "latent_channels": AUDIO_LATENT_CHANNELS,
    "num_res_blocks": 1,
}
_UPSAMPLER = {"in_channels": LATENT_CHANNELS, "mid_channels": 32, "num_blocks_per_stage": 1}  # GroupNorm: 32s
# Every real channel count divided by 32; one block layer each.
_VAE_20 = {
    "latent_channels": LATENT_CHANNELS,
    "block_out_channels": [8, 16, 32, 64],
    "decoder_block_out_channels": [8, 16, 32],
    "layers_per_block": [1, 1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 1],
}
_VAE_23 = {
    "latent_channels": LATENT_CHANNELS,
    "block_out_channels": [8, 16, 32, 32],
    "decoder_block_out_channels": [8, 16, 16, 32],
    "layers_per_block": [1, 1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 1, 1],
}
# hidden_channels must stay >= 2 ** len(upsample_factors): each stage halves the channels.
_VOCODER_20 = {"hidden_channels": 32}
_VOCODER_BWE = {"hidden_channels": 64, "bwe_hidden_channels": 32}
_DURATION_HEAD = {
    "video_cross_attention_dim": VIDEO_WIDTH,
    "audio_cross_attention_dim": AUDIO_WIDTH,
    "pooler_hidden_dim": 16,  # 4 pooler heads kept
    "mlp_hidden_dim": 16,
}
_DIFFUSION_DECODER = {
    "latent_channels": LATENT_CHANNELS,
    "decoder_head_dim": 8,  # the 3-D rope needs a multiple of 8
    "decoder_stage_channels": [64, 32, 16, 16, 8],  # real / 32; the upsample channel reductions hold
    "decoder_stage_depths": [1, 1, 1, 1, 1],
    "decoder_t_emb_dim": 16,
    # Not widths: the neighborhood-attention windows. The real (3,7,7) / (3,5,5) and (11,11,11)
    # need a latent of at least 3x7x7 (17 frames of 224x224), whose 53k stage-5 tokens the CPU
    # path (eager FlexAttention) attends in full: an 11 GB score matrix a head. These need 3x3
    # latents (96x96). The stages' temporal 3 stays: it sets the decoder's trailing ghost frames.
    "decoder_stage_kernels": [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "decoder_stage5_kernel": [3, 3, 3],
}

# generation -> component folder -> {config key: twin value}; every other key is the real one.
SHRUNK = {
    "ltx-2.0": {
        "transformer": {**_TRANSFORMER, "caption_channels": TEXT_HIDDEN},  # 2.0 projects captions in the DiT
        "connectors": _CONNECTORS_20,
        "vae": _VAE_20,
        "audio_vae": _AUDIO_VAE,
        "vocoder": _VOCODER_20,
        "latent_upsampler": _UPSAMPLER,
    },
    "ltx-2.3": {
        # caption_channels stays 3840: unused when use_prompt_embeddings=False.
        "transformer": _TRANSFORMER,
        "connectors": _CONNECTORS_23,
        "vae": _VAE_23,
        "audio_vae": _AUDIO_VAE,
        "vocoder": _VOCODER_BWE,
        "latent_upsampler": _UPSAMPLER,
    },
    "ltx-2.5": {
        "transformer": _TRANSFORMER,
        "transformer_full": _TRANSFORMER,
        # The real caption_channels / text_proj_in_factor come from the Gemma 4 text config at
        # conversion time and are unknown here: real_configs keeps placeholders for them.
        "connectors": _CONNECTORS_23,
        "vae": _VAE_23,
        "audio_vae": _AUDIO_VAE,
        "vocoder": _VOCODER_BWE,
        # real_configs/ltx-2.5/latent_upsampler.json is a placeholder (the 2.3 values): the
        # conversion script refuses --version 2.5 for the upsampler.
        "latent_upsampler": _UPSAMPLER,
        "duration_head": _DURATION_HEAD,
        "diffusion_decoder": _DIFFUSION_DECODER,
    },
}
# Folders beside the model_index components (loaded explicitly, as the diffusers docs show).
# 2.5's transformer_full/ is the SFT DiT: the twin's is a second, differently seeded DiT.
COMPANION_FOLDERS = {
    "ltx-2.0": ("latent_upsampler",),
    "ltx-2.3": ("latent_upsampler",),
    "ltx-2.5": ("latent_upsampler", "transformer_full", "diffusion_decoder"),
}
# Root stage-2 distilled LoRA of each generation's repo, under its real name.
DISTILLED_LORA = {
    "ltx-2.0": "ltx-2-19b-distilled-lora-384.safetensors",
    "ltx-2.3": "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
    "ltx-2.5": "ltx-2.5-22b-distilled-lora-450-bf16.safetensors",
}
# The scheduler each repo ships: dev (dynamic shifting, terminal 0.1) for 2.0 / 2.3; 2.5's
# model_index transformer is the distilled DiT, so it ships the distilled config.
SCHEDULER = {"ltx-2.0": "scheduler_dev", "ltx-2.3": "scheduler_dev", "ltx-2.5": "scheduler_distilled"}
# Component folder -> real config file, where they differ.
_CONFIG_FILE = {"transformer_full": "transformer"}


def real_config(generation: str, component: str) -> dict:
    """The real config of ``component`` (a folder name, or ``scheduler_dev`` etc.) in ``generation``."""
    _check_generation(generation)
    return json.loads((REAL_CONFIGS / generation / f"{_CONFIG_FILE.get(component, component)}.json").read_text())


def twin_config(generation: str, component: str) -> dict:
    """The real config with this generation's shrunk keys replaced."""
    return {**real_config(generation, component), **SHRUNK[generation].get(component, {})}


def _check_generation(generation: str) -> None:
    if generation not in TWIN_GENERATIONS:
        raise ValueError(f"like={generation!r} is not a known LTX-2 generation; choose one of {', '.join(TWIN_GENERATIONS)}")


def _model(class_name: str, config: dict, seed: int):
    """A randomly initialised diffusers model of ``class_name`` from ``config``."""
    import torch
    import diffusers
    from diffusers.pipelines import ltx2

    cls = getattr(ltx2, class_name, None) or getattr(diffusers, class_name)
    torch.manual_seed(seed)
    return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def build_twin_components(generation: str, seed: int = 0) -> dict:
    """Every model_index component of a ``generation`` twin, randomly initialised from ``seed``."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    _check_generation(generation)
    index = real_config(generation, "model_index")
    tokenizer = build_gemma_tokenizer()
    torch.manual_seed(seed)
    if index["text_encoder"][1] == "Gemma4UnifiedForConditionalGeneration":
        text_encoder = build_gemma4_text_encoder(tokenizer)
    else:
        text_encoder = build_gemma3_text_encoder(tokenizer, TEXT_HIDDEN, TEXT_LAYERS)
    components = {"tokenizer": tokenizer, "text_encoder": text_encoder}
    components["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(real_config(generation, SCHEDULER[generation]))
    for i, name in enumerate(("transformer", "connectors", "vae", "audio_vae", "vocoder", "duration_head")):
        if index.get(name, [None, None])[1] is not None:
            components[name] = _model(index[name][1], twin_config(generation, name), seed + i)
    return components


def make_twin(out_dir: str | Path, like: str, seed: int = 0) -> Path:
    """Write a tiny random ``like`` twin (a generation in ``TWIN_GENERATIONS``) to ``out_dir``."""
    from diffusers import LTX2Pipeline

    _check_generation(like)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # a crashed build's leftovers
    pipe = LTX2Pipeline(**build_twin_components(like, seed))
    pipe.save_pretrained(tmp)
    for i, folder in enumerate(COMPANION_FOLDERS[like]):
        config = twin_config(like, folder)
        _model(config["_class_name"], config, seed + 100 + i).save_pretrained(tmp / folder)
    # The stage-2 distilled LoRA, random like every twin weight, on a copy of the transformer.
    transformer = copy.deepcopy(pipe.transformer)
    metadata = {"ltx_generation": like}
    write_lora(transformer, tmp / DISTILLED_LORA[like], seed + 200, metadata, target_modules=_linears(transformer))
    (tmp / CARD_NAME).write_text(json.dumps({"model_id": f"ltx-ray/twin-{like}", "revision": TWIN_REVISION, "seed": seed}))
    return publish_dir(tmp, out)


def write_twin_loras(twin_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Per-row LoRAs fitting a twin's transformer, for tests: ``style`` and ``ic-{depth,pose,canny}``.

    They are written outside the twin (which keeps the real layout) and record the generation
    they were made for in their metadata, as ``ltx_generation``.
    """
    from diffusers import LTX2VideoTransformer3DModel

    twin, out = Path(twin_dir), Path(out_dir)
    card = json.loads((twin / CARD_NAME).read_text())
    generation = card["model_id"].removeprefix("ltx-ray/twin-")
    transformer = LTX2VideoTransformer3DModel.from_pretrained(twin / "transformer")
    seed = card["seed"] + 300
    meta, targets = {"ltx_generation": generation}, _linears(transformer)
    paths = {"style": write_lora(transformer, out / f"{generation}-style.safetensors", seed, meta, target_modules=targets)}
    for i, kind in enumerate(("depth", "pose", "canny")):
        ic_meta = {**meta, "reference_downscale_factor": "1"}
        path = out / f"{generation}-ic-{kind}.safetensors"
        paths[f"ic-{kind}"] = write_lora(transformer, path, seed + 1 + i, ic_meta, target_modules=targets)
    return paths


def _linears(transformer) -> list[str]:
    """Every linear layer of the DiT: a twin LoRA covers them all, so it carries its generation's module tree."""
    import torch

    return [name for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)]


def resolve_twin(like: str) -> Path:
    """The cached ``like`` twin, built into ``$LTX_RAY_CACHE/models/twin-<gen>-r<REVISION>`` once."""
    from ltx_ray.engine.weights import cache_root  # fsspec; the CLI reads TWIN_GENERATIONS without it

    _check_generation(like)
    path = cache_root() / "models" / f"twin-{like}-r{TWIN_REVISION}"
    if not (path / CARD_NAME).exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            make_twin(path, like)
        except OSError:
            # Another worker built it at the same moment; its rename won.
            if not (path / CARD_NAME).exists():
                raise
    return path
