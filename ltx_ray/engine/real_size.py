"""Real-size LTX-2 with random weights, built on the device: the real architectures without their 60 GB.

``bench/gpu.py`` measures LTX-2.0 and LTX-2.5 end to end through ``LTX2Engine(pipeline=...)`` and
``JobRunner`` without downloading or writing the weights. Every diffusers component is built from
its generation's real config (``real_configs/``, what the twins shrink) directly on the device in
the run's dtype, so its kernels, memory and FLOPs are the real ones; only the values are random.

Not real, and why:
- the text encoder is a ``Gemma3ForConditionalGeneration`` at Gemma 3 12B's size for both
  generations: LTX-2.5's Gemma 4 12B (``gemma4_unified``) config is not known here, so its
  connectors' placeholder ``caption_channels`` / ``text_proj_in_factor`` take Gemma 3 12B's;
- the tokenizer is the twins' byte-level Gemma tokenizer: every prompt is padded to the profile's
  ``max_sequence_length`` (1,024), so the text encoder sees the real token count;
- what a run loads from files beside the model (the x2 latent upsampler, a per-row LoRA) is
  written to a folder (``write_companions``, ``write_random_lora``): random, at the real size.
``shrink=True`` builds the same components at the twins' widths (``twins.SHRUNK``): the same code
on a CPU, for tests.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ltx_ray.engine.gemma_twins import TEXT_HIDDEN, TEXT_LAYERS, build_gemma_tokenizer
from ltx_ray.engine.twins import SCHEDULER, TWIN_GENERATIONS, real_config, twin_config

# google/gemma-3-12b-it config.json: text_config and its SigLIP vision tower (loaded, unused by text).
GEMMA3_12B_TEXT = dict(
    hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16, num_key_value_heads=8,
    head_dim=256, vocab_size=262208, sliding_window=1024, query_pre_attn_scalar=256,
)
GEMMA3_12B_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=896,
    patch_size=14, vision_use_head=False,
)
GEMMA3_12B_IMAGE_TOKENS = 256
# The diffusers components of every generation, in model_index order; the duration head where it ships.
COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "duration_head")
# The attention projections a per-row LoRA adapts (tiny_model.ATTENTION_PROJECTIONS' real-size counterpart).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def component_configs(generation: str, shrink: bool = False) -> dict[str, dict]:
    """Each diffusers component's config (and the latent upsampler's): real, or the twin's with ``shrink``."""
    if generation not in TWIN_GENERATIONS:
        raise ValueError(f"{generation!r} is not a known LTX-2 generation; choose one of {', '.join(TWIN_GENERATIONS)}")
    index = real_config(generation, "model_index")
    names = [n for n in COMPONENTS if (index.get(n) or [None, None])[1]] + ["latent_upsampler"]
    configs = {n: (twin_config if shrink else real_config)(generation, n) for n in names}
    connectors = configs["connectors"]
    if isinstance(connectors["caption_channels"], str):  # LTX-2.5's placeholders: Gemma 3 12B stands in
        connectors.update(caption_channels=GEMMA3_12B_TEXT["hidden_size"],
                          text_proj_in_factor=GEMMA3_12B_TEXT["num_hidden_layers"] + 1)
    return configs


@contextmanager
def building_on(device, dtype):
    """Modules created inside are allocated on ``device`` in ``dtype``: no host copy, no cast."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_model(config: dict, device, dtype, seed: int = 0):
    """One diffusers model of ``config['_class_name']``, randomly initialised on ``device``."""
    import diffusers
    import torch
    from diffusers.pipelines import ltx2

    cls = getattr(ltx2, config["_class_name"], None) or getattr(diffusers, config["_class_name"])
    torch.manual_seed(seed)
    with building_on(device, dtype):
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")}).eval()


def build_text_encoder(tokenizer, device, dtype, shrink: bool = False, seed: int = 0):
    """Gemma 3 12B (random) over ``tokenizer``; with ``shrink`` the twins' tiny Gemma 3."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from ltx_ray.engine.tiny_model import build_gemma3_text_encoder

    torch.manual_seed(seed)
    with building_on(device, dtype):
        if shrink:
            return build_gemma3_text_encoder(tokenizer, TEXT_HIDDEN, TEXT_LAYERS)
        config = Gemma3Config(
            text_config={**GEMMA3_12B_TEXT, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                         "eos_token_id": tokenizer.eos_token_id},
            vision_config=GEMMA3_12B_VISION, mm_tokens_per_image=GEMMA3_12B_IMAGE_TOKENS,
            boi_token_index=tokenizer.boi_token_id, eoi_token_index=tokenizer.eoi_token_id,
            image_token_index=tokenizer.image_token_id,
        )
        return Gemma3ForConditionalGeneration(config).eval()


def build_components(generation: str, device, dtype, *, shrink: bool = False, seed: int = 0) -> dict:
    """Every ``LTX2Pipeline`` component of ``generation``, random, on ``device`` in ``dtype``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    configs = component_configs(generation, shrink)
    tokenizer = build_gemma_tokenizer()
    components = {
        "tokenizer": tokenizer,
        "text_encoder": build_text_encoder(tokenizer, device, dtype, shrink, seed),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_config(real_config(generation, SCHEDULER[generation])),
    }
    for i, name in enumerate(n for n in COMPONENTS if n in configs):
        components[name] = build_model(configs[name], device, dtype, seed + 1 + i)
    return components


def write_companions(folder: str | Path, generation: str, device, dtype, *, shrink: bool = False, seed: int = 0) -> Path:
    """The x2 latent upsampler a two-stage job loads, saved (random, real-size: ~1 GB in bf16) under
    ``folder/latent_upsampler``, where ``LTX2Engine`` looks for it."""
    import torch

    folder = Path(folder)
    upsampler = build_model(component_configs(generation, shrink)["latent_upsampler"], device, dtype, seed + 100)
    upsampler.save_pretrained(folder / "latent_upsampler")
    del upsampler
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return folder


def write_random_lora(transformer, path: str | Path, *, rank: int, generation: str, seed: int = 0) -> Path:
    """A random rank-``rank`` LoRA on every attention projection of ``transformer``, in diffusers'
    ``transformer.*`` keys with its generation in the metadata, made from the layer shapes (a copy
    of a 19B transformer for peft to adapt does not fit beside it)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator("cpu").manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS):
            out_features, in_features = module.weight.shape
            # B small but not zero (peft's default zero B would be a no-op LoRA that still costs its matmuls).
            down = torch.randn(rank, in_features, generator=generator) / in_features**0.5
            up = torch.randn(out_features, rank, generator=generator) * (0.01 / rank**0.5)
            state[f"transformer.{name}.lora_A.weight"] = down.to(module.weight.dtype)
            state[f"transformer.{name}.lora_B.weight"] = up.to(module.weight.dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"ltx_generation": generation})
    return path
