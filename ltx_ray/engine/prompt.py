"""What the engine does with a prompt before denoising: prompt enhancement and ``seconds: auto``.

Both follow diffusers 0.42.1 ``LTX2Pipeline.__call__`` (enhancement first, then the duration
head reads the prompt it will be conditioned on), called as steps of their own so the rewrite
and the chosen length are known and recorded before the job runs.
"""

from __future__ import annotations

import torch

from ltx_ray.engine.types import JobInputs
from ltx_ray.errors import InputError
from ltx_ray.schema.job import Job
from ltx_ray.schema.profiles import ModelProfile


def load_enhancer(pipe, folder: str, profile: ModelProfile, dtype: torch.dtype) -> None:
    """``--enhancer``: the processor (and, where the profile's enhancer is separate, the Gemma 4
    model) as the pipeline's optional ``processor`` / ``prompt_enhancer`` components (diffusers
    docs, "Prompt Enhancement" and "Prompt Enhancement for LTX-2.5")."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    pipe.register_modules(processor=AutoProcessor.from_pretrained(folder))
    if profile.enhancer == "separate":
        pipe.register_modules(prompt_enhancer=AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).eval())


def enhance(pipe, job: Job, inputs: JobInputs, profile: ModelProfile, device, *, available: bool) -> tuple[Job, dict]:
    """``enhance_prompt``: ``LTX2Pipeline.enhance_prompt`` with the system prompt ``__call__`` picks
    (LTX-2.5's with a separate enhancer, the docs' 2.0 / 2.3 ones with the text encoder; i2v's
    looks at the image too) and the job's seed, as ``__call__`` seeds it from the generator."""
    from diffusers.pipelines.ltx2 import utils as ltx2_utils

    if not available:
        raise InputError(
            f"enhance_prompt: true needs a prompt enhancer and profile {profile.name} has none loaded; "
            f"pass --enhancer with a local copy of {profile.enhancer_repo}, or set enhance_prompt false"
        )
    image = inputs.image if job.task == "i2v" else None
    kind = "I2V" if image is not None else "T2V"
    name = ("LTX2_5_" if profile.enhancer == "separate" else "") + f"{kind}_DEFAULT_SYSTEM_PROMPT"
    with torch.inference_mode():
        text = pipe.enhance_prompt(
            prompt=job.prompt, system_prompt=getattr(ltx2_utils, name), seed=job.seed, device=device, image=image,
        )[0].strip()
    info = {"enhanced_prompt": text or job.prompt,
            "prompt_enhancement": {"original_prompt": job.prompt, "system_prompt": name, "enhancer": profile.enhancer}}
    return (job.model_copy(update={"prompt": text}) if text else job), info


def pick_length(pipe, job: Job, profile: ModelProfile, device, cache) -> tuple[Job, dict]:
    """``seconds: auto``: the duration head's frame count for the prompt, as the auto-duration
    branch of ``LTX2Pipeline.__call__`` computes it (prompt -> Gemma -> connectors ->
    ``predict_num_frames``), then the job runs with that length."""
    head = getattr(pipe, "duration_head", None)
    if head is None:
        raise InputError(f"seconds: 'auto' needs a model with a duration head (LTX-2.5 and later); "
                         f"profile {profile.name} has none; give seconds as a number or num_frames")
    bounds = job.auto_seconds
    with torch.inference_mode():
        # Through the worker's cache: an unguided (distilled) job then runs on the same embeddings.
        encoded = cache.encode(pipe, job.prompt, None, max_sequence_length=profile.max_sequence_length, device=device)
        embeds, mask = encoded["prompt_embeds"], encoded["prompt_attention_mask"]
        side = getattr(pipe.tokenizer, "padding_side", "left") if pipe.tokenizer is not None else "left"
        video, audio, _ = pipe.connectors(embeds, mask, padding_side=side)
        predicted = float(head(video[:1], audio[:1])[0])
        frames = head.predict_num_frames(
            video[:1], audio[:1], frame_rate=job.fps, temporal_compression_ratio=pipe.vae_temporal_compression_ratio,
            min_seconds=bounds.min_seconds, max_seconds=bounds.max_seconds,
        )
    picked = {"seconds": "auto", "predicted_s": round(predicted, 3), "min_seconds": bounds.min_seconds,
              "max_seconds": bounds.max_seconds, "num_frames": frames}
    return job.model_copy(update={"num_frames": frames}), picked
