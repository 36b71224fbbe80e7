"""Load an LTX-2 once and generate clips from Jobs: the facade over diffusers.

This module and its siblings in ltx_ray/engine/ are the only ones that touch diffusers:
- ltx2.py (this file): loading, choosing the pipeline for a task, the call arguments,
  decoding;
- stages.py: one- and two-stage denoising (x2 latent upsampler, distilled refinement,
  tiled refinement for very large token counts);
- lora.py: per-row LoRAs cached by URI and applied for one row only;
- decode.py: latents to frames (conv VAE or LTX-2.5's diffusion decoder) and waveform.

One ``LTX2Engine`` holds one set of components. Every task's pipeline (text-to-video,
image-to-video, condition, in-context) is a view over the same modules (``from_pipe``), so
a worker serves every task without reloading weights. Long videos and extensions are
chains of segments (engine/segments.py), each one call of ``generate_segment``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ltx_ray.engine.decode import Decoders
from ltx_ray.engine.placement import OffloadMode, Placement, plan_placement
from ltx_ray.engine.segments import extend_clip, generate_long
from ltx_ray.engine.types import Clip, JobInputs, latent_index, whole_latent_frames
from ltx_ray.schema.job import Job
from ltx_ray.schema.profiles import ModelProfile, precision_problem

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# VAE tiling above 720p: a 1080p or 4K clip decoded in one piece needs tens of GiB.
VAE_TILING_PIXELS = 1280 * 720


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


class LTX2Engine:
    """A loaded LTX-2 pipeline set on one device."""

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        profile: ModelProfile,
        offload: OffloadMode = "auto",
        max_refine_tokens: int | None = None,
        upsampler: str | None = None,
        distilled_lora: str | None = None,
        enhancer: str | None = None,
    ):
        """``upsampler`` / ``distilled_lora``: two-stage's companions (``ResolvedModel`` carries
        them, ``--upsampler`` / ``--distilled-lora`` included); default the profile's, in ``model_dir``.
        ``enhancer``: the folder enhance_prompt's processor (and, for LTX-2.5, Gemma 4) load from."""
        from diffusers import (
            FlowMatchEulerDiscreteScheduler,
            LTX2ConditionPipeline,
            LTX2ImageToVideoPipeline,
            LTX2InContextPipeline,
            LTX2Pipeline,
            LTX2VideoTransformer3DModel,
        )
        from diffusers.utils import logging as diffusers_logging

        # Loading bars and per-module cast notices drown a batch log; errors still show.
        from transformers.utils import logging as transformers_logging

        from ltx_ray.engine.lora import LoraCache
        from ltx_ray.engine.stages import MAX_REFINE_TOKENS, Stages

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        problem = precision_problem(dtype, profile)
        if problem:
            raise ValueError(problem)
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.profile = profile
        extra = {}
        if profile.transformer_subfolder != "transformer":  # LTX-2.5 full: the SFT DiT is not in model_index
            extra["transformer"] = LTX2VideoTransformer3DModel.from_pretrained(
                model_dir, subfolder=profile.transformer_subfolder, dtype=self.dtype
            )
        base = LTX2Pipeline.from_pretrained(model_dir, dtype=self.dtype, **extra)
        # Sigmas are passed to every call as the profile's recipe computes them
        # (schema/schedules.py); the shipped scheduler config would shift and stretch them by
        # the token count (and give NaN above ~50k tokens).
        base.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            base.scheduler.config, use_dynamic_shifting=False, shift_terminal=None, shift=1.0
        )
        if enhancer and Path(enhancer) != Path(model_dir):  # the model's own loaded with it
            self._load_enhancer(base, enhancer)
        self.enhances = getattr(base, "processor", None) is not None and (
            profile.enhancer == "text_encoder" or getattr(base, "prompt_enhancer", None) is not None
        )
        self.placement = self._place(base, offload)
        # from_pipe without a dtype casts the shared modules to float32 (diffusers#12754).
        self._pipes = {
            "t2v": base,
            "i2v": LTX2ImageToVideoPipeline.from_pipe(base, dtype=self.dtype),
            "condition": LTX2ConditionPipeline.from_pipe(base, dtype=self.dtype),
            "control": LTX2InContextPipeline.from_pipe(base, dtype=self.dtype),
        }
        self.component_dtypes = {
            name: str(next(m.parameters()).dtype).removeprefix("torch.")
            for name, m in base.components.items() if isinstance(m, torch.nn.Module) and any(True for _ in m.parameters())
        }
        for pipe in self._pipes.values():
            pipe.set_progress_bar_config(disable=True)
        root = Path(model_dir)
        self.decoders = Decoders(base, root, torch.device(self.placement.execution_device), self.dtype)
        self.loras = LoraCache(base, profile.generation)
        upsampler_dir = Path(upsampler) if upsampler else root / profile.upsampler
        if distilled_lora is None and profile.distilled_lora:
            distilled_lora = str(root / profile.distilled_lora)
        self.stages = Stages(
            base,
            upsampler_dir=upsampler_dir if upsampler_dir.is_dir() else None,
            distilled_lora=distilled_lora if distilled_lora and Path(distilled_lora).is_file() else None,
            loras=self.loras,
            dtype=self.dtype,
            device=torch.device(self.placement.execution_device),
            max_refine_tokens=max_refine_tokens or MAX_REFINE_TOKENS,
        )

    @property
    def audio_sample_rate(self) -> int:
        return int(self._pipes["t2v"].vocoder.config.output_sampling_rate)

    def generate(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        """Run one job (one segment, or a chain of them). Raises on failure; the caller records it."""
        picked = enhanced = None
        if job.enhance_prompt:  # first, as in diffusers: the duration head reads the enhanced prompt
            job, enhanced = self._enhance(job, inputs)
        if job.auto_seconds is not None:
            job, picked = self._pick_length(job)
        if job.task == "extend":
            clip = extend_clip(self.generate_segment, job, inputs, self.audio_sample_rate)
        elif job.num_frames > job.segment_frames:
            clip = generate_long(self.generate_segment, job, inputs, self.audio_sample_rate)
        else:
            clip = self.generate_segment(job, inputs, on_step)
        if picked is not None:
            clip.info["duration"] = picked
        if enhanced is not None:
            clip.info.update(enhanced)
        return clip

    def _load_enhancer(self, base, folder: str) -> None:
        """``--enhancer``: the processor (and, where the profile's enhancer is separate, the Gemma 4
        model) as the pipeline's optional ``processor`` / ``prompt_enhancer`` components (diffusers
        docs, "Prompt Enhancement" and "Prompt Enhancement for LTX-2.5")."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        base.register_modules(processor=AutoProcessor.from_pretrained(folder))
        if self.profile.enhancer == "separate":
            model = AutoModelForImageTextToText.from_pretrained(folder, dtype=self.dtype).eval()
            base.register_modules(prompt_enhancer=model)

    def _enhance(self, job: Job, inputs: JobInputs) -> tuple[Job, dict]:
        """``enhance_prompt``: diffusers 0.42.1 ``LTX2Pipeline.enhance_prompt`` with the system prompt
        its ``__call__`` picks (LTX-2.5's with a separate enhancer, the docs' 2.0 / 2.3 ones with the
        text encoder; i2v's looks at the image too) and the job's seed, as ``__call__`` seeds it."""
        from diffusers.pipelines.ltx2 import utils as ltx2_utils

        from ltx_ray.errors import InputError

        if not self.enhances:
            raise InputError(
                f"enhance_prompt: true needs a prompt enhancer and profile {self.profile.name} has none loaded; "
                f"pass --enhancer with a local copy of {self.profile.enhancer_repo}, or set enhance_prompt false"
            )
        image = inputs.image if job.task == "i2v" else None
        name = ("LTX2_5_" if self.profile.enhancer == "separate" else "") + ("I2V" if image is not None else "T2V") + "_DEFAULT_SYSTEM_PROMPT"
        with torch.inference_mode():
            text = self._pipes["t2v"].enhance_prompt(
                prompt=job.prompt, system_prompt=getattr(ltx2_utils, name), seed=job.seed,
                device=self.placement.execution_device, image=image,
            )[0].strip()
        info = {"enhanced_prompt": text or job.prompt,
                "prompt_enhancement": {"original_prompt": job.prompt, "system_prompt": name, "enhancer": self.profile.enhancer}}
        return (job.model_copy(update={"prompt": text}) if text else job), info

    def _pick_length(self, job: Job) -> tuple[Job, dict]:
        """``seconds: auto``: the duration head's frame count for the prompt, as the auto-duration
        branch of diffusers 0.42.1 ``LTX2Pipeline.__call__`` computes it (prompt -> Gemma ->
        connectors -> ``predict_num_frames``), then the job runs with that length."""
        from ltx_ray.errors import InputError

        pipe = self._pipes["t2v"]
        head = getattr(pipe, "duration_head", None)
        if head is None:
            raise InputError(f"seconds: 'auto' needs a model with a duration head (LTX-2.5 and later); "
                             f"profile {self.profile.name} has none; give seconds as a number or num_frames")
        bounds = job.auto_seconds
        with torch.inference_mode():
            embeds, mask, _, _ = pipe.encode_prompt(
                prompt=job.prompt, do_classifier_free_guidance=False,
                max_sequence_length=self.profile.max_sequence_length, device=self.placement.execution_device,
            )
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

    def generate_segment(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        """One pass of the model (one or two stages) over ``job.num_frames`` frames."""
        pipe, kwargs, adapters = self._task_call(job, inputs)
        if on_step is not None:

            def _callback(_pipe, step, _t, _tensors):
                on_step(step + 1, job.steps)
                return {}

            kwargs["callback_on_step_end"] = _callback
        given_audio = kwargs.get("audio_latents") is not None
        with self._vae_tiling(job) as tiling, torch.inference_mode():
            video_latents, audio_latents, info = self.stages.run(pipe, job, kwargs, adapters)
            frames = self.decoders.video(pipe, video_latents, job.decoder, job.seed)
            audio = None
            if job.audio and given_audio:
                audio = self._given_audio(job, inputs)  # a2v: the track itself, never the model's copy
            elif job.audio:
                audio = self.decoders.audio(pipe, audio_latents)
        del video_latents, audio_latents
        self._free()
        info.update(vae_tiling=tiling, decoder=job.decoder, loras=[{"uri": uri, "scale": scale} for uri, scale in adapters])
        return Clip(
            frames=frames,
            fps=job.fps,
            audio=audio,
            sample_rate=self.audio_sample_rate if audio is not None else None,
            info=info,
        )

    def _task_call(self, job: Job, inputs: JobInputs) -> tuple:
        """The pipeline view, its keyword arguments and the LoRA adapters for one segment."""
        from diffusers.pipelines.ltx2 import LTX2ReferenceCondition, LTX2VideoCondition

        sigmas = job.stages[0].sigmas
        kwargs = guidance_kwargs(job)
        kwargs.update(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            width=job.width,
            height=job.height,
            num_frames=job.num_frames,
            frame_rate=job.fps,
            sigmas=sigmas,
            num_inference_steps=len(sigmas),
            max_sequence_length=self.profile.max_sequence_length,
            # Seeded on the CPU so a job gives the same noise on any device.
            generator=torch.Generator("cpu").manual_seed(job.seed),
        )
        adapters = [(lora.uri, lora.scale) for lora in job.loras]
        conditions = []
        if inputs.prefix:
            # A chained segment starts with the end of the previous one, held fixed.
            conditions.append(LTX2VideoCondition(frames=whole_latent_frames(inputs.prefix), index=0, strength=1.0))
        if job.task == "keyframes":
            conditions += [
                LTX2VideoCondition(frames=img, index=latent_index(frame), strength=strength)
                for img, frame, strength in inputs.keyframes or []
            ]
        if job.task == "v2v":
            frames = whole_latent_frames(inputs.video[: job.num_frames])
            conditions.append(LTX2VideoCondition(frames=frames, index=0, strength=job.strength))
        if job.task == "a2v" and inputs.audio is not None:
            kwargs["audio_latents"] = self._encode_audio(job, inputs)
        if job.task == "control":
            kwargs["reference_conditions"] = [
                LTX2ReferenceCondition(frames=whole_latent_frames(inputs.control[: job.num_frames]), strength=1.0)
            ]
            kwargs["reference_downscale_factor"] = self.loras.reference_downscale_factor(job.ic_lora)
            adapters.insert(0, (job.ic_lora, 1.0))
            if conditions:
                kwargs["conditions"] = conditions
            return self._pipes["control"], kwargs, adapters
        if conditions:
            kwargs["conditions"] = conditions
            return self._pipes["condition"], kwargs, adapters
        if job.task == "i2v" and inputs.image is not None:
            kwargs["image"] = inputs.image
            return self._pipes["i2v"], kwargs, adapters
        return self._pipes["t2v"], kwargs, adapters

    def _encode_audio(self, job: Job, inputs: JobInputs) -> torch.Tensor:
        """a2v: the given track's audio-VAE latents ``[1, C, L, M]`` spanning the video exactly.

        diffusers has no frozen-audio A2V (the official ``A2VidPipelineTwoStage`` keeps the
        audio tokens clean at timestep 0 in every step). Here the encoded track enters through
        the pipeline's public ``audio_latents`` input with ``noise_scale`` 0, so denoising
        starts from the real audio rather than from noise; the model may still move those
        latents during the steps, which is why the mp4 carries the given waveform itself
        (``_given_audio``), never the model's decoded copy.
        """
        from ltx_ray.engine.audio import fit_length, log_mel

        vae = self._pipes["t2v"].audio_vae
        cfg = vae.config
        seconds = job.num_frames / job.fps
        wave = fit_length(inputs.audio, round(seconds * inputs.audio_rate))
        mel = log_mel(
            wave, inputs.audio_rate, sample_rate=cfg.sample_rate, hop_length=cfg.mel_hop_length,
            mel_bins=cfg.mel_bins, channels=cfg.in_channels,
        )
        latents = vae.encode(mel.to(self.placement.execution_device, vae.dtype)).latent_dist.mode()
        per_second = cfg.sample_rate / cfg.mel_hop_length / vae.temporal_compression_ratio
        length = round(seconds * per_second)  # what the pipeline would have drawn as noise
        if latents.shape[2] < length:
            latents = torch.cat([latents, latents[:, :, -1:].expand(-1, -1, length - latents.shape[2], -1)], dim=2)
        return latents[:, :, :length]

    def _given_audio(self, job: Job, inputs: JobInputs) -> np.ndarray:
        from ltx_ray.engine.audio import fit_length, resample, with_channels

        # Same layout as the model's own audio (stereo for LTX-2), so every mp4 looks alike.
        channels = int(getattr(self._pipes["t2v"].vocoder.config, "out_channels", 2))
        wave = with_channels(resample(inputs.audio, inputs.audio_rate, self.audio_sample_rate), channels)
        return fit_length(wave, round(job.num_frames / job.fps * self.audio_sample_rate))

    def _place(self, pipe, offload: OffloadMode) -> Placement:
        """Put the components where ``plan_placement`` says (all GPUs the replica was given)."""
        modules = {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
        if self.device.type != "cuda":
            pipe.to(self.device)
            return Placement(
                devices={n: str(self.device) for n in modules},
                offload="none",
                execution_device=str(self.device),
                reason=f"single device {self.device}",
            )
        # Ray gives the actor its GPUs through CUDA_VISIBLE_DEVICES: use every visible one.
        free = {f"cuda:{i}": torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())}
        sizes = {n: sum(p.numel() * p.element_size() for p in m.parameters()) for n, m in modules.items()}
        plan = plan_placement(sizes, free, offload=offload)
        if plan.offload == "model":
            pipe.enable_model_cpu_offload(device=plan.execution_device)
        elif plan.offload == "group":
            pipe.enable_group_offload(
                onload_device=torch.device(plan.execution_device),
                offload_device=torch.device("cpu"),
                offload_type="block_level",
                num_blocks_per_group=1,
                use_stream=True,
            )
        else:
            from accelerate.hooks import AlignDevicesHook, add_hook_to_module

            split = len(set(plan.devices.values())) > 1
            for name, module in modules.items():
                module.to(plan.devices[name])
                if split:
                    # Inputs move to the component's card and outputs come back, so the
                    # pipeline code runs unchanged across cards.
                    add_hook_to_module(module, AlignDevicesHook(execution_device=plan.devices[name], io_same_device=True))
        return plan

    @contextmanager
    def _vae_tiling(self, job: Job):
        """Tiled VAE encode/decode for frames above 720p, for this job only."""
        vae = self._pipes["t2v"].vae
        on = job.width * job.height > VAE_TILING_PIXELS
        if on:
            vae.enable_tiling()
        try:
            yield on
        finally:
            if on:
                vae.disable_tiling()

    def _free(self) -> None:
        """Per-job tensors go now, not at the next job: long runs die of memory kept between jobs."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
