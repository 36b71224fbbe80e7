"""Load an LTX-2 once and generate clips from Jobs: the facade over diffusers.

This module and its siblings in ltx_ray/engine/ are the only ones that touch diffusers:
- ltx2.py (this file): loading, choosing the pipeline for a task, the call arguments,
  decoding;
- stages.py: one- and two-stage denoising (x2 latent upsampler, distilled refinement,
  tiled refinement for very large token counts);
- lora.py: per-row LoRAs cached by URI and applied for one row only;
- conditioning.py: keyframes at their exact frame (the condition and in-context views);
- decode.py: latents to frames (conv VAE or LTX-2.5's diffusion decoder) and waveform;
- prompt.py: before denoising, prompt enhancement and ``seconds: auto``'s length;
- retake.py: retake's span, generated again between the source's kept frames and sound;
- parallel.py: a replica of several ranks: each transformer call split over them (Ulysses, CFG).

One ``LTX2Engine`` holds one set of components. Every task's pipeline (text-to-video,
image-to-video, condition, in-context) is a view over the same modules (``from_pipe``), so
a worker serves every task without reloading weights; a row of LTX-2.5's other variant
swaps in the repo's other DiT for that row (``_variant``). Long videos and extensions are
chains of segments (engine/segments.py), each one call of ``generate_segment``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ltx_ray.engine.conditioning import FrameCondition, KeyframeConditionPipeline, KeyframeInContextPipeline, audio_held
from ltx_ray.engine import retake
from ltx_ray.engine.decode import Decoders
from ltx_ray.engine.levers import Levers, apply_levers
from ltx_ray.engine.load import TextEncoderVisits, load_pipeline, make_plan, place_built, planned_bytes, share_device_map
from ltx_ray.engine.parallel import make_layout, parallel_record, parallel_transformer, refusal
from ltx_ray.engine.placement import OffloadMode, Placement
from ltx_ray.engine.prompt import enhance, pick_length
from ltx_ray.engine.prompt_cache import PromptCache
from ltx_ray.engine.segments import extend_clip, generate_long
from ltx_ray.engine.stages import guidance_kwargs
from ltx_ray.engine.tracks import encode_track, track_for_mux
from ltx_ray.engine.types import Clip, JobInputs, latent_index, whole_latent_frames
from ltx_ray.schema.job import Job
from ltx_ray.schema.parallel import Parallel
from ltx_ray.schema.profiles import PROFILES, ModelProfile, precision_problem

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _put(module: torch.nn.Module, device: str, plan: Placement) -> None:
    """A component onto its device. Where the plan spans several cards, inputs move to the
    component's card and outputs come back (accelerate's hook), so the pipeline code runs
    unchanged across cards."""
    module.to(device)
    if len(set(plan.devices.values())) > 1:
        from accelerate.hooks import AlignDevicesHook, add_hook_to_module

        add_hook_to_module(module, AlignDevicesHook(execution_device=device, io_same_device=True))


@dataclass
class _Dit:
    """A transformer with what belongs to it: its LoRA cache and its stage-2 LoRA file."""

    transformer: torch.nn.Module
    loras: object
    distilled_lora: str | None


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
        attention: str = "native",
        levers: Levers | None = None,
        parallel: Parallel | None = None,
        pipeline=None,
    ):
        """``upsampler`` / ``distilled_lora``: two-stage's companions (``ResolvedModel`` carries
        them, ``--upsampler`` / ``--distilled-lora`` included); default the profile's, in ``model_dir``.
        ``enhancer``: the folder enhance_prompt's processor (and, for LTX-2.5, Gemma 4) load from.
        ``pipeline``: an ``LTX2Pipeline`` already built (bench/gpu.py's random real-size weights,
        engine/real_size.py) instead of loading ``model_dir``, which then holds only the companions.
        ``parallel``: this replica's layout over the ranks of the default process group, which must
        be initialised first (engine/parallel.py); every rank builds its engine in the same order."""
        from diffusers import FlowMatchEulerDiscreteScheduler, LTX2ImageToVideoPipeline
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
        root = self.root = Path(model_dir)
        upsampler_dir = Path(upsampler) if upsampler else root / profile.upsampler
        if distilled_lora is None and profile.distilled_lora:
            distilled_lora = str(root / profile.distilled_lora)
        upsampler_dir = upsampler_dir if upsampler_dir.is_dir() else None
        distilled_lora = distilled_lora if distilled_lora and Path(distilled_lora).is_file() else None
        enhancer = Path(enhancer) if enhancer and Path(enhancer) != root else None  # the model's own loads with it
        if pipeline is None:  # planned from the files' headers, each component loaded onto its device (engine/load.py)
            sizes = planned_bytes(root, profile, self.dtype, upsampler=upsampler_dir, distilled_lora=distilled_lora,
                                  enhancer=enhancer)
            self.placement = make_plan(sizes, self.device, offload)
            base = load_pipeline(root, profile, self.dtype, self.placement, enhancer=enhancer)
        else:  # built on its card already: placed where it lies
            base, self.placement = pipeline, place_built(pipeline, self.device, offload, self.dtype,
                                                         upsampler=upsampler_dir, distilled_lora=distilled_lora)
        self.text_encoder = TextEncoderVisits(base, self.placement)
        # Sigmas are passed to every call as the profile's recipe computes them
        # (schema/schedules.py); the shipped scheduler config would shift and stretch them by
        # the token count (and give NaN above ~50k tokens).
        base.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            base.scheduler.config, use_dynamic_shifting=False, shift_terminal=None, shift=1.0
        )
        self.enhances = getattr(base, "processor", None) is not None and (
            profile.enhancer == "text_encoder" or getattr(base, "prompt_enhancer", None) is not None
        )
        self.attention = attention  # diffusers' dispatcher: flash / sage kernels (batch.run.check_attention)
        if attention != "native":
            base.transformer.set_attention_backend(attention)
        self._levers = levers or profile.levers  # fp8 / compile now (engine/levers.py); the per-row two in Stages
        self.levers = apply_levers(base.transformer, self._levers, self.placement.input_device("transformer"))
        self.parallel = parallel or Parallel()
        self.layout = make_layout(self.parallel, self.device, base.transformer.config.num_attention_heads, attention)
        # from_pipe without a dtype casts the shared modules to float32 (diffusers#12754).
        self._pipes = {
            "t2v": base,
            "i2v": LTX2ImageToVideoPipeline.from_pipe(base, dtype=self.dtype),
            "condition": KeyframeConditionPipeline.from_pipe(base, dtype=self.dtype),
            "control": KeyframeInContextPipeline.from_pipe(base, dtype=self.dtype),
        }
        self.component_dtypes = {
            name: str(next(m.parameters()).dtype).removeprefix("torch.")
            for name, m in base.components.items() if isinstance(m, torch.nn.Module) and any(True for _ in m.parameters())
        }
        for pipe in self._pipes.values():
            pipe.set_progress_bar_config(disable=True)
            share_device_map(base, pipe)
        self._dits: dict[str, _Dit] = {}  # other variants' DiTs, loaded on first use
        self.decoders = Decoders(base, root, self.placement, self.dtype)
        self.loras = LoraCache(base, profile.generation)
        self.prompt_cache = PromptCache()
        self.stages = Stages(
            base,
            upsampler_dir=upsampler_dir,
            distilled_lora=distilled_lora,
            loras=self.loras,
            dtype=self.dtype,
            placement=self.placement,
            max_refine_tokens=max_refine_tokens or MAX_REFINE_TOKENS, levers=self._levers,
        )

    @property
    def audio_sample_rate(self) -> int:
        return int(self._pipes["t2v"].vocoder.config.output_sampling_rate)

    def generate(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        """Run one job (one segment, or a chain of them). Raises on failure; the caller records it."""
        problem = refusal(self.layout, job.task)
        if problem:
            from ltx_ray.errors import InputError

            raise InputError(problem)
        with self._variant(job):
            clip = self._generate(job, inputs, on_step)
        clip.info["variant"] = PROFILES.get(job.profile, self.profile).variant
        clip.info["parallel"] = parallel_record(self.parallel)
        return clip

    @contextmanager
    def _variant(self, job: Job):
        """A row whose ``variant`` is the repo's other DiT (LTX-2.5: ``transformer/`` distilled,
        ``transformer_full/`` full) runs on that DiT, loaded once on first use and kept beside the
        first (both stay in memory), with its own LoRA cache and stage-2 LoRA; for this row only."""
        from ltx_ray.engine.lora import LoraCache
        from ltx_ray.errors import InputError

        profile = PROFILES.get(job.profile, self.profile)
        if profile.transformer_subfolder == self.profile.transformer_subfolder:
            yield
            return
        if self.placement.offload != "none":
            raise InputError(f"variant {profile.variant!r} on a replica that offloads ({self.placement.offload}): a "
                             f"second DiT does not fit beside the first; run these rows with --profile {profile.name}")
        dit = self._dits.get(profile.name)
        if dit is None:
            from diffusers import LTX2VideoTransformer3DModel

            module = LTX2VideoTransformer3DModel.from_pretrained(self.root, subfolder=profile.transformer_subfolder,
                                                                 dtype=self.dtype)
            lora = self.root / profile.distilled_lora if profile.distilled_lora else None
            _put(module.eval(), self.placement.devices["transformer"], self.placement)  # where the first one is
            if self.attention != "native":
                module.set_attention_backend(self.attention)
            apply_levers(module, self._levers, self.placement.devices["transformer"])
            dit = self._dits[profile.name] = _Dit(
                module, LoraCache(self._pipes["t2v"], profile.generation), str(lora) if lora and lora.is_file() else None,
            )
        saved = _Dit(self._pipes["t2v"].transformer, self.loras, self.stages.distilled_lora)
        self._use_dit(dit)
        try:
            yield
        finally:
            self._use_dit(saved)

    def _use_dit(self, dit: _Dit) -> None:
        for pipe in self._pipes.values():
            pipe.transformer = dit.transformer
        self.loras = self.stages.loras = dit.loras
        self.stages.distilled_lora = dit.distilled_lora

    def _generate(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        picked = enhanced = None
        pipe, device = self._pipes["t2v"], self.placement.execution_device
        misses, encode_s = self.prompt_cache.misses, self.prompt_cache.encode_s
        if job.enhance_prompt:  # first, as in diffusers: the duration head reads the enhanced prompt
            job, enhanced = enhance(pipe, job, inputs, self.profile, device, available=self.enhances)
        if job.auto_seconds is not None:
            job, picked = pick_length(pipe, job, self.profile, device, self.prompt_cache)
        if job.task == "extend":
            clip = extend_clip(self.generate_segment, job, inputs, self.audio_sample_rate)
        elif job.num_frames > job.segment_frames:
            clip = generate_long(self.generate_segment, job, inputs, self.audio_sample_rate)
        else:
            clip = self.generate_segment(job, inputs, on_step)
        clip.info["prompt_cache"] = "miss" if self.prompt_cache.misses > misses else "hit"
        clip.info["encode_prompt_s"] = round(self.prompt_cache.encode_s - encode_s, 4)
        if picked is not None:
            clip.info["duration"] = picked
        if enhanced is not None:
            clip.info.update(enhanced)
        return clip

    def generate_segment(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        """One pass of the model (one or two stages) over ``job.num_frames`` frames."""
        pipe, kwargs, adapters = self._task_call(job, inputs)
        self.text_encoder.rest()  # encoded (or cached): a visiting encoder leaves the card to the denoising
        if on_step is not None:

            def _callback(_pipe, step, _t, _tensors):
                on_step(step + 1, job.steps)
                return {}

            kwargs["callback_on_step_end"] = _callback
        given_audio = kwargs.get("audio_latents") is not None
        with self.decoders.tiling(job) as tiling, torch.inference_mode():
            span = retake.prepare(pipe, job, inputs, self.placement) if job.task == "retake" else None
            held = audio_held(pipe, kwargs["audio_latents"]) if given_audio else nullcontext()  # a2v: frozen track
            # retake: the source kept outside the span; parallel: the transformer's calls split over the ranks
            pair = job.video_guidance.modality > 1 or job.audio_guidance.modality > 1  # an STG call, then a modality one
            with retake.span_held(pipe, span) if span else held, \
                    parallel_transformer(pipe.transformer, self.layout, pair_modality=pair):
                video_latents, audio_latents, info = self.stages.run(pipe, job, kwargs, adapters)
            if span:
                video_latents, audio_latents = retake.keep_source_latents(span, video_latents, audio_latents)
            frames = self.decoders.video(pipe, video_latents, job.decoder, job.seed)
            audio = None
            if job.audio and given_audio:
                # a2v: the track itself, never the model's copy
                audio = track_for_mux(pipe, inputs.audio, inputs.audio_rate, job.duration_s, self.audio_sample_rate)
            elif job.audio:
                audio = self.decoders.audio(pipe, audio_latents)
        del video_latents, audio_latents
        if span:
            frames, audio = retake.compose(span, job, inputs, frames, audio, pipe, self.audio_sample_rate)
            info["retake"] = span.record(job)
        self.free()
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

        from ltx_ray.errors import InputError

        sigmas = job.stages[0].sigmas
        kwargs = guidance_kwargs(job)
        # Encoded once per prompt per worker (stages, segments, QC retries and rows share it).
        negative = job.negative_prompt if job.classifier_free_guidance else None
        kwargs.update(self.prompt_cache.encode(self._pipes["t2v"], job.prompt, negative, device=self.placement.execution_device,
                                               max_sequence_length=self.profile.max_sequence_length))
        kwargs.update(
            width=job.width,
            height=job.height,
            num_frames=job.num_frames,
            frame_rate=job.fps,
            sigmas=sigmas,
            num_inference_steps=len(sigmas),
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
                FrameCondition(frames=img, index=latent_index(frame), strength=strength,
                               frame=frame if job.keyframe_time == "exact" else None)
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
            self._pipes["control"].reference_temporal_scale = self.loras.reference_temporal_scale_factor(job.ic_lora)
            adapters.insert(0, (job.ic_lora, 1.0))
            if job.stage_1_lora:  # the distilled IC-LoRA recipe on a dev transformer: made distilled by its LoRA
                if not self.stages.distilled_lora:
                    raise InputError(f"ic_lora: a control row on {job.profile} runs the official distilled IC-LoRA "
                                     f"recipe, which needs the stage-2 LoRA {job.stage_1_lora}; this model lacks it: "
                                     "put it in the model folder or start with --distilled-lora, or give steps to run "
                                     "the guided dev recipe")
                adapters.append((self.stages.distilled_lora, 1.0))
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
        """a2v: the given track's latents, held clean at timestep 0 in every call of both stages
        (``conditioning.audio_held``); the mp4 carries the track itself, as the official
        ``A2VidPipelineTwoStage`` returns the input audio."""
        return encode_track(self._pipes["t2v"], inputs.audio, inputs.audio_rate, job.duration_s,
                            self.placement.input_device("audio_vae"))

    def free(self) -> None:
        """Per-job tensors go now, not at the next job: long runs die of memory kept between jobs."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
