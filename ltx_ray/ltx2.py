"""The one module that touches diffusers: load an LTX-2 once, generate clips from Jobs.

One ``LTX2Engine`` holds one set of components. The text-to-video, image-to-video and
condition (keyframes) pipelines are views over the same modules (``from_pipe``), so a
worker serves every task without reloading weights.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ltx_ray.placement import OffloadMode, Placement, plan_placement
from ltx_ray.schema import Job, ModelDefaults

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Clip:
    """A generated video: uint8 frames [F, H, W, 3] and, when asked for, float audio [C, S]."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int | None


@dataclass
class JobInputs:
    """Decoded conditioning inputs of one job (fetched by ltx_ray.inputs)."""

    image: Image.Image | None = None
    keyframes: list[tuple[Image.Image, int, float]] | None = None


def latent_index(frame: int) -> int:
    """The latent frame holding output ``frame``: diffusers' condition index is a latent index.

    Latent 0 is output frame 0; latent L >= 1 covers output frames 8(L-1)+1 .. 8L, and a
    keyframe placed there takes effect from frame 8(L-1)+1 (``keyframe_effective_frame``).
    """
    return 0 if frame == 0 else (frame - 1) // 8 + 1


def keyframe_effective_frame(frame: int) -> int:
    """The output frame where a keyframe asked for at ``frame`` lands."""
    index = latent_index(frame)
    return 0 if index == 0 else 8 * (index - 1) + 1


class LTX2Engine:
    """A loaded LTX-2 pipeline set on one device."""

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        defaults: ModelDefaults,
        offload: OffloadMode = "auto",
    ):
        from diffusers import LTX2ConditionPipeline, LTX2ImageToVideoPipeline, LTX2Pipeline
        from diffusers.utils import logging as diffusers_logging

        # Loading bars and per-module cast notices drown a batch log; errors still show.
        from transformers.utils import logging as transformers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.defaults = defaults
        base = LTX2Pipeline.from_pretrained(model_dir, dtype=self.dtype)
        self.placement = self._place(base, offload)
        base.set_progress_bar_config(disable=True)
        self._pipes = {
            "t2v": base,
            "i2v": LTX2ImageToVideoPipeline.from_pipe(base),
            "keyframes": LTX2ConditionPipeline.from_pipe(base),
        }
        for pipe in self._pipes.values():
            pipe.set_progress_bar_config(disable=True)

    @property
    def audio_sample_rate(self) -> int:
        return int(self._pipes["t2v"].vocoder.config.output_sampling_rate)

    def generate(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip:
        """Run one job. Raises on failure; the caller turns that into a failed row."""
        pipe = self._pipes[job.task]
        kwargs = dict(self.defaults.call_kwargs)
        kwargs.update(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            width=job.width,
            height=job.height,
            num_frames=job.num_frames,
            frame_rate=job.fps,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale,
            # Seeded on the CPU so a job gives the same noise on any device.
            generator=torch.Generator("cpu").manual_seed(job.seed),
        )
        if job.task == "i2v":
            kwargs["image"] = inputs.image
        elif job.task == "keyframes":
            from diffusers.pipelines.ltx2 import LTX2VideoCondition

            kwargs["conditions"] = [
                LTX2VideoCondition(frames=img, index=latent_index(frame), strength=strength)
                for img, frame, strength in inputs.keyframes or []
            ]
        if on_step is not None:

            def _callback(_pipe, step, _t, _tensors):
                on_step(step + 1, job.steps)
                return {}

            kwargs["callback_on_step_end"] = _callback

        decode_audio = job.audio or pipe.vae.config.timestep_conditioning
        with torch.inference_mode():
            if decode_audio:
                out = pipe(output_type="np", **kwargs)
                video = out.frames[0]
                audio = out.audio[0].float().cpu().numpy() if job.audio else None
            else:
                out = pipe(output_type="latent", **kwargs)
                video = self._decode_video(pipe, out.frames)
                audio = None
        frames = (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        del out, video
        self._free()
        return Clip(
            frames=frames,
            fps=job.fps,
            audio=audio,
            sample_rate=self.audio_sample_rate if audio is not None else None,
        )

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

    @staticmethod
    def _decode_video(pipe, latents: torch.Tensor) -> np.ndarray:
        """Decode video latents only, skipping the audio VAE and vocoder.

        Mirrors the decode branch of diffusers 0.42 ``LTX2Pipeline.__call__`` for VAEs without
        timestep conditioning (``output_type="latent"`` returns latents already denormalised).
        """
        video = pipe.vae.decode(latents.to(pipe.vae.dtype), None, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]

    def _free(self) -> None:
        """Per-job tensors go now, not at the next job: long runs die of memory kept between jobs."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
