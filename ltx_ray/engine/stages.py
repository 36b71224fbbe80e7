"""Denoising in one or two stages (one of the three modules that touch diffusers).

Two stages, as LTX-2's official two-stage pipelines and the diffusers examples do:
  1. the task's pipeline at half width and height, ``output_type="latent"``;
  2. ``LTX2LatentUpsamplePipeline`` doubles the latents' width and height (x2 spatial);
  3. refinement at full size: ``latents=`` the upsampled latents, noised to the first
     value of ``STAGE_2_DISTILLED_SIGMA_VALUES`` and denoised along that short distilled
     schedule without guidance, with the distilled LoRA on dev models (the job names it; a
     replica without it fails the job rather than refine without).

Very large outputs (a 10 s 4K clip is ~250k video tokens at stage 2) cannot be refined in
one attention pass: above ``max_refine_tokens`` each transformer call of the refinement runs
on overlapping spatial tiles blended at every step (engine/tiling.py). Time is not tiled
here: a clip longer than one segment is already split in time (engine/segments.py).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from ltx_ray.engine.guidance import batched_stg
from ltx_ray.engine.tiling import tiled_transformer
from ltx_ray.schema.job import Job
from ltx_ray.schema.levers import Levers

# Official multi-GPU runners cap one attention pass at 32,768 video tokens.
MAX_REFINE_TOKENS = 32768
# Stage 2 is distilled: no classifier-free, spatio-temporal or modality guidance.
NO_GUIDANCE = dict(
    guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
    audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0, audio_guidance_rescale=0.0,
)
# Inputs of the in-context (control) call that the plain refinement call does not take.
_CONTROL_ONLY = ("reference_conditions", "reference_downscale_factor")


def guidance_kwargs(job: Job) -> dict:
    """The guidance stack of a diffusers LTX2 call, every term explicit (the call's own defaults
    add STG, modality and audio CFG passes even at ``guidance_scale=1``)."""
    v, a = job.video_guidance, job.audio_guidance
    return dict(
        guidance_scale=v.cfg, stg_scale=v.stg, modality_scale=v.modality, guidance_rescale=v.rescale,
        audio_guidance_scale=a.cfg, audio_stg_scale=a.stg, audio_modality_scale=a.modality,
        audio_guidance_rescale=a.rescale, spatio_temporal_guidance_blocks=job.stg_blocks,
        use_cross_timestep=job.cross_timestep,
    )


class Stages:
    """Runs a task's call in one stage or in two (upsample + distilled refinement)."""

    def __init__(self, base, *, upsampler_dir: Path | None, distilled_lora: str | None, loras, dtype, placement,
                 max_refine_tokens: int, levers: Levers | None = None):
        self.base = base
        self.upsampler_dir = upsampler_dir
        self.distilled_lora = distilled_lora
        self.loras = loras
        self.dtype = dtype
        self.placement = placement  # where each component is (engine.placement.Placement)
        self.max_refine_tokens = max_refine_tokens
        self.levers = levers or Levers()  # the per-row two: fuse_stage2_lora, batch_guidance
        self._upsample_pipe = None

    def run(self, pipe, job, kwargs: dict, adapters: list[tuple[str, float]]):
        """Video latents [B, C, F, H, W] and audio latents [B, C, L, M] (denormalised), and what was done."""
        guided: dict = {}  # what --batch-guidance did in stage 1
        if not job.two_stage:
            with self.loras.active(adapters), self._batched(pipe, job, kwargs, guided):
                out = pipe(output_type="latent", **kwargs)
            return out.frames, out.audio, {"stages": self._record(job, guided), "distilled_lora": None}
        if job.distilled_lora and not self.distilled_lora:
            # A Serve request meets no driver-side check_companions: say so before any step runs.
            raise RuntimeError(
                f"two_stage on profile {job.profile} refines with its stage-2 LoRA {job.distilled_lora}, which this "
                f"model lacks; put it in the model folder or start with --distilled-lora, or set two_stage false"
            )
        with self.loras.active(adapters), self._batched(pipe, job, kwargs, guided):
            first = pipe(output_type="latent", **{**kwargs, "width": job.width // 2, "height": job.height // 2})
        latents = self._upsample(first.frames)
        if kwargs.get("image") is not None:
            # ti2vid_two_stages.py conditions stage 2 on the image encoded again at full size
            # (combined_image_conditionings); diffusers' i2v would keep the upsampled first latent.
            latents[:, :, :1] = self._encode_image(pipe, kwargs["image"], job.width, job.height).to(latents.device, latents.dtype)
        # a2v refines against the given track again; otherwise stage 1's audio is refined too.
        audio = kwargs["audio_latents"] if kwargs.get("audio_latents") is not None else first.audio
        del first
        # Stage 2 has no reference tokens, so no IC-LoRA; the stage-2 LoRA is added once (control on
        # a dev model already has it from stage 1).
        refine_adapters = [a for a in adapters if a[0] not in (job.ic_lora, self.distilled_lora)]
        if self.distilled_lora:
            refine_adapters.append((self.distilled_lora, 1.0))
        # In-context reference tokens are a stage-1 matter (diffusers' IC pipeline docs).
        refine_pipe = self.base if job.task == "control" else pipe
        tiling: dict = {}
        fused = {"lora_fused": False}
        with self.loras.active(refine_adapters), self._fused(refine_adapters, fused), \
                tiled_transformer(refine_pipe.transformer, self.max_refine_tokens, tiling):
            out = refine_pipe(output_type="latent", **self._refine_kwargs(kwargs, job, latents, audio))
        # ti2vid_two_stages.py (dev + LoRA) keeps stage 1's audio ("Stage 2 refines video
        # only; discard its audio"); distilled.py keeps stage 2's.
        refined_audio = audio if self.distilled_lora else out.audio
        return out.frames, refined_audio, self._two_stage_info(job, tiles=tiling["tiles"], guided=guided, fused=fused)

    def _batched(self, pipe, job, kwargs: dict, record: dict):
        """--batch-guidance: the STG pass inside the conditional call (engine/guidance.py), where STG is on."""
        stg_on = job.video_guidance.stg > 0 or job.audio_guidance.stg > 0
        if not (self.levers.batch_guidance and stg_on and kwargs.get("spatio_temporal_guidance_blocks")):
            return nullcontext()
        return batched_stg(pipe.transformer, kwargs["spatio_temporal_guidance_blocks"], record)

    def _fused(self, adapters: list[tuple[str, float]], record: dict):
        """--fuse-stage2-lora: stage 2's LoRAs merged into the weights while it runs (lora.LoraCache.fused).
        Not on float8 weights (merging would quantize them again) nor on offloaded ones."""
        if not (self.levers.fuse_stage2_lora and adapters and self.levers.quantize == "none"
                and self.placement.offload == "none"):
            return nullcontext()
        return self.loras.fused(adapters, record)

    def _record(self, job, guided: dict, fused: dict | None = None) -> list[dict]:
        """The stages as run, for the sidecar: sizes, sigmas, passes per step, the LoRA applied,
        and what the per-row levers did (transformer calls with STG batched; the LoRA fused)."""
        plans = [p.model_dump() for p in job.stages]
        if guided:
            plans[0].update(transformer_calls=guided["calls"], stg_batched=guided["stg_batched"])
        if len(plans) > 1:
            plans[1]["lora"] = Path(self.distilled_lora).name if self.distilled_lora else None
            plans[1].update(fused or {})
        return plans

    def _two_stage_info(self, job, *, tiles: int, guided: dict, fused: dict) -> dict:
        return {"stages": self._record(job, guided, fused), "refine_tiles": tiles,
                "distilled_lora": Path(self.distilled_lora).name if self.distilled_lora else None}

    def _upsample(self, latents: torch.Tensor) -> torch.Tensor:
        if self._upsample_pipe is None:
            from diffusers import LTX2LatentUpsamplePipeline
            from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

            if self.upsampler_dir is None:
                raise RuntimeError(
                    "two_stage needs a latent upsampler, and the model folder has no latent_upsampler/; "
                    "add LTX-2's x2 spatial upsampler there or set two_stage false"
                )
            # Beside the VAE: the upsample pipeline denormalises with the VAE's statistics on its card.
            model = LTX2LatentUpsamplerModel.from_pretrained(self.upsampler_dir, torch_dtype=self.dtype,
                                                             device_map={"": self.placement.input_device("vae")})
            self._upsample_pipe = LTX2LatentUpsamplePipeline(vae=self.base.vae, latent_upsampler=model)
            self._upsample_pipe.set_progress_bar_config(disable=True)
        return self._upsample_pipe(latents=latents, output_type="latent").frames

    def _encode_image(self, pipe, image, width: int, height: int) -> torch.Tensor:
        """The i2v image as one raw (unnormalised) VAE latent frame at ``width`` x ``height``,
        prepared as ``LTX2ImageToVideoPipeline.__call__`` prepares it (CRF re-compression, resize)."""
        import numpy as np
        from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf, resolve_default_image_crf
        from PIL import Image

        crf = resolve_default_image_crf(pipe.text_encoder)
        if crf:
            image = Image.fromarray(apply_image_conditioning_crf(np.array(image.convert("RGB")), crf))
        pixels = pipe.video_processor.preprocess(image, height=height, width=width)
        pixels = pixels.to(self.placement.input_device("vae"), pipe.vae.dtype).unsqueeze(2)  # [B, C, 1, H, W]
        return pipe.vae.encode(pixels).latent_dist.mode()

    def _refine_kwargs(self, kwargs: dict, job, latents: torch.Tensor, audio: torch.Tensor) -> dict:
        from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES

        sigmas = list(STAGE_2_DISTILLED_SIGMA_VALUES)
        out = {k: v for k, v in kwargs.items() if k not in _CONTROL_ONLY and k != "callback_on_step_end"}
        if job.task == "control":
            # The refinement runs on the plain pipeline, and stage 1 has already placed the
            # frame conditions; the refinement starts from that structure.
            out.pop("conditions", None)
            out.pop("image", None)
        out.update(NO_GUIDANCE)
        out.update(
            latents=latents,
            audio_latents=audio,
            width=latents.shape[4] * 32,
            height=latents.shape[3] * 32,
            sigmas=sigmas,
            noise_scale=sigmas[0],
            num_inference_steps=len(sigmas),
            generator=torch.Generator("cpu").manual_seed(job.seed + 1),
        )
        return out
