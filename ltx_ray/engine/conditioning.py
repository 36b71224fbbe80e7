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
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import LTX2ConditionPipeline, LTX2InContextPipeline
from diffusers.pipelines.ltx2 import LTX2VideoCondition


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
    """``LTX2InContextPipeline`` (IC-LoRA control) with keyframes at their exact frame."""
