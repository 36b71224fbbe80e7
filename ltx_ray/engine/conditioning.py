"""Frame conditions placed as the official pipelines place them (a thin layer over diffusers).

diffusers 0.42.1 takes a condition's ``index`` as a latent index and appends a keyframe at
latent index L > 0 as extra tokens at pixel frame ``8(L-1)+1`` (``LTX2ConditionPipeline.
prepare_latents``): frame 120 of 121 lands at 113, frame 60 at 57. The official
``VideoConditionByKeyframeIndex`` (ltx-core ``conditioning/types/keyframe_cond.py``, used by
ltx-pipelines ``keyframe_interpolation.py`` and ``utils/helpers.combined_image_conditionings``)
puts the same tokens at the asked pixel frame ``frame_idx``. ``ExactKeyframes`` changes only
that number: it overrides ``_prepare_keyframe_coords`` (the one place diffusers turns the
latent index into a RoPE time) to use the condition's own ``frame``. Everything else
(the appended clean tokens, the strength mask, the single-frame ``[f, f + 1)`` extent, the
division by fps) is diffusers' own code, which mirrors ``keyframe_cond.py`` line for line.

A condition at frame 0 stays diffusers' first-latent replacement
(``VideoConditionByLatentIndex``), as ``combined_image_conditionings`` does; only
``keyframe_interpolation.py`` appends frame 0 as a guiding token too.

``audio_held`` is a2v's frozen audio, which diffusers lacks: the official
``A2VidPipelineTwoStage`` (ltx-pipelines ``a2vid_two_stage.py``) denoises video only, the
encoded track a ``ModalitySpec(frozen=True)`` in both stages (clean tokens, denoise mask 0,
so audio timestep 0) under a guider with no audio guidance.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from diffusers import LTX2ConditionPipeline, LTX2InContextPipeline
from diffusers.pipelines.ltx2 import LTX2VideoCondition

from ltx_ray.engine.types import whole_latent_frames


@dataclass
class FrameCondition(LTX2VideoCondition):
    """A condition with the exact output frame it stands for (``index`` stays the latent index)."""

    frame: int | None = None


class ExactKeyframes:
    """Mixin over a diffusers LTX-2 condition pipeline: appended keyframes at their own frame."""

    def preprocess_conditions(self, conditions=None, height=512, width=768, num_frames=121, device=None):
        out = super().preprocess_conditions(conditions, height, width, num_frames, device)
        # prepare_latents asks for the coordinates of each appended (latent index > 0)
        # condition in this order, skipping the ones diffusers drops (index past the end).
        ratio = self.vae_temporal_compression_ratio
        latent_frames = (num_frames - 1) // ratio + 1
        listed = [conditions] if isinstance(conditions, LTX2VideoCondition) else list(conditions or [])
        self._keyframe_frames = []
        for c in listed:
            index = c.index % latent_frames if c.index < 0 else c.index
            if 0 < index < latent_frames:
                frame = getattr(c, "frame", None)
                self._keyframe_frames.append((index - 1) * ratio + 1 if frame is None else frame)
        return out

    def _prepare_keyframe_coords(self, keyframe_latent_num_frames, keyframe_latent_height, keyframe_latent_width,
                                 pixel_frame_idx, num_pixel_frames, fps, device):
        return super()._prepare_keyframe_coords(
            keyframe_latent_num_frames, keyframe_latent_height, keyframe_latent_width,
            self._keyframe_frames.pop(0), num_pixel_frames, fps, device,
        )


class KeyframeConditionPipeline(ExactKeyframes, LTX2ConditionPipeline):
    """``LTX2ConditionPipeline`` with keyframes at their exact frame."""


class KeyframeInContextPipeline(ExactKeyframes, LTX2InContextPipeline):
    """``LTX2InContextPipeline`` (IC-LoRA control) with keyframes at their exact frame, and the
    reference video at the IC-LoRA's ``reference_temporal_scale_factor``, which diffusers ignores.

    An IC-LoRA trained on control videos at 1/S of the frame rate (ltx-pipelines
    ``iclora_utils.temporal_subsample``: frame 0, then every S-th) sees its reference that way:
    its tokens are spaced S frames apart and shifted so the last ends with the target's, as
    ltx-core's ``VideoConditionByReferenceLatent.apply_to`` places them.
    """

    reference_temporal_scale = 1  # S, set per job by the engine from the IC-LoRA's metadata

    def _encode_reference_conditions(self, reference_conditions, *args, **kwargs):
        scale = self.reference_temporal_scale
        if scale == 1:
            return super()._encode_reference_conditions(reference_conditions, *args, **kwargs)
        subsampled = [replace(c, frames=whole_latent_frames([c.frames[0], *c.frames[1::scale]]))
                      for c in reference_conditions]
        latents, coords, cross_mask, counts = super()._encode_reference_conditions(subsampled, *args, **kwargs)
        coords = coords.clone()
        fps = kwargs.get("frame_rate", 24.0)
        coords[:, 0] = (coords[:, 0] * scale - (scale - 1) / fps).clamp(min=0)  # seconds, start and end
        return latents, coords, cross_mask, counts


@contextmanager
def audio_held(pipe, audio_latents: torch.Tensor):
    """Every transformer call of ``pipe`` (both stages, every guidance pass) gets the given
    audio latents clean, at audio timestep and sigma 0, and answers zero audio velocity.

    Zero velocity makes the rest of diffusers' loop leave the audio alone, bit for bit:
    each guidance pass's x0 = x - sigma * 0 = x, so every audio delta is 0, the rescale of x
    by itself is x, and the audio scheduler step adds (sigma_next - sigma) * 0. The video
    still attends to the track through the audio-to-video cross-attention, as in the official
    frozen modality. Hooks (first in line) rather than a copy of the 600-line loop.
    """
    clean = pipe._normalize_audio_latents(
        pipe._pack_audio_latents(audio_latents), pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std
    )

    def before(_module, args, kwargs):
        given = kwargs["audio_hidden_states"]
        kwargs["audio_hidden_states"] = clean.to(given.device, given.dtype).expand(given.shape[0], -1, -1)
        ref = kwargs["sigma"] if kwargs.get("sigma") is not None else kwargs["timestep"]
        zeros = ref.new_zeros(given.shape[0])  # one audio timestep per batch item, as the pipelines pass it
        kwargs["audio_timestep"], kwargs["audio_sigma"] = zeros, zeros
        return args, kwargs

    def after(_module, _args, _kwargs, output):
        video, audio = output
        return video, torch.zeros_like(audio)

    with transformer_hooks(pipe.transformer, before, after):
        yield


@contextmanager
def transformer_hooks(transformer, before, after):
    """``before`` (a pre-hook given the call's keyword arguments) and ``after`` (an output hook)
    on every transformer call in the block, first in line (before accelerate's or peft's)."""
    handles = [transformer.register_forward_pre_hook(before, with_kwargs=True, prepend=True),
               transformer.register_forward_hook(after, with_kwargs=True, prepend=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def forward_replaced(transformer, forward):
    """``transformer.forward`` is ``forward`` within the block; then what it was: accelerate's hook
    wrapper where there is one, the class's forward otherwise."""
    own = transformer.__dict__.get("forward")
    transformer.forward = forward
    try:
        yield
    finally:
        if own is None:
            del transformer.forward  # the class's forward again
        else:
            transformer.forward = own
