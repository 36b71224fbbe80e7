"""Which files of a model repository a profile loads, so a copy fetches those and nothing else.

A real LTX-2 repo is mostly files no diffusers pipeline reads: the Hub's ``Lightricks/LTX-2``
and its object-store mirrors carry the single-file checkpoints
(``ltx-2-19b-dev.safetensors``, ``-distilled``, ``-fp8``: 20-40 GB each) beside the diffusers
folders, and other generations' LoRAs. ``DiffusionPipeline.download`` would fetch only the
``model_index.json`` components and miss the companions (``latent_upsampler/``, the root
stage-2 LoRA). The patterns here are those components plus the profile's companions.

Patterns are globs matched with ``fnmatch.fnmatchcase`` on paths relative to the repo root,
where ``*`` crosses ``/``: the rule ``huggingface_hub``'s ``allow_patterns`` follows, so one
list selects from an object-store listing and from the Hub alike.

This module is pure data: ``validate`` and ``plan`` may read it without torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from ltx_ray.schema.profiles import ModelProfile

# ltx-ray's model card: a tiny model's id and revision, or {"profile": ...} for any folder.
CARD_NAME = "ltx_ray_model.json"
# What ``engine/weights.py`` ``detect_profile`` reads: fetched first, before the profile is known.
PROFILE_FILES = ("model_index.json", CARD_NAME, "transformer/config.json", "scheduler/scheduler_config.json")
# [H] LTX-2.5's diffusion VAE decoder, beside the model_index components (loaded explicitly).
DIFFUSION_DECODER = "diffusion_decoder"


def index_components(index: dict) -> dict[str, str]:
    """The components a ``model_index.json`` names (folder -> class), those set to ``[null, null]`` left out."""
    return {
        name: spec[1] for name, spec in index.items()
        if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and spec[1] is not None
    }


def needed_patterns(profile: ModelProfile, index: dict, *, upsampler: bool = True, distilled_lora: bool = True) -> list[str]:
    """The files ``profile`` loads from a repo whose ``model_index.json`` is ``index``.

    - ``model_index.json``, the card, and every component folder model_index names (config
      and weights); LTX-2.5 full loads ``transformer_full/`` instead of ``transformer/``, whose
      config alone is kept (profile detection reads it);
    - ``latent_upsampler/`` always: it is ~1 GB, and a Serve app learns only per request
      whether a job is two-stage, so what a replica loads cannot depend on one manifest;
    - the root stage-2 LoRA of dev / full profiles (distilled ones refine without one), for
      the same reason;
    - LTX-2.5's ``diffusion_decoder/`` (a few GB), where the repo has one;
    - never the root single-file checkpoints nor another generation's LoRA.
    ``upsampler`` / ``distilled_lora`` False leave those out: ``--upsampler`` /
    ``--distilled-lora`` name another file.
    """
    if profile.generation == "tiny":
        return ["*"]  # ltx-ray's own model, a few MB, in its own layout (loras/ included)
    patterns = list(PROFILE_FILES)
    for name in index_components(index):
        if name == "transformer" and profile.transformer_subfolder != "transformer":
            continue  # its config is in PROFILE_FILES; the weights are the other DiT's
        patterns.append(f"{name}/*")
    if profile.transformer_subfolder != "transformer":
        patterns.append(f"{profile.transformer_subfolder}/*")
    if upsampler:
        patterns.append(f"{profile.upsampler}/*")
    if distilled_lora and profile.distilled_lora:
        patterns.append(profile.distilled_lora)
    if profile.generation == "ltx-2.5":
        patterns.append(f"{DIFFUSION_DECODER}/*")
    return list(dict.fromkeys(patterns))


def select(paths: Iterable[str], patterns: list[str]) -> list[str]:
    """The ``paths`` (relative, ``/``-separated) that match any of ``patterns``."""
    return [p for p in paths if any(fnmatchcase(p, pattern) for pattern in patterns)]
