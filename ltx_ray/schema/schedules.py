"""Noise schedules as the official pipelines compute them, and the stages a job runs.

Every pipeline call gets its sigmas explicitly, with a scheduler that neither shifts nor
stretches them (``engine/ltx2.py``): the diffusers pipelines would otherwise shift by the
token count with the real scheduler config (``use_dynamic_shifting``, ``shift_terminal``),
which moves the distilled sigmas and turns every sigma into NaN above ~50k tokens.

Pure Python, so ``ltx-ray plan`` prints the same numbers the engine uses without torch.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

# Lightricks/LTX-2 ltx_pipelines/utils/constants.py (the trailing 0.0 is the scheduler's own).
DISTILLED_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]
STAGE_2_DISTILLED_SIGMAS = [0.909375, 0.725, 0.421875]
# ltx_core/components/schedulers.py: LTX2Scheduler.execute(steps) is always called without a
# latent, so its token count is MAX_SHIFT_ANCHOR and the shift is max_shift, at every size.
BASE_SHIFT_ANCHOR, MAX_SHIFT_ANCHOR = 1024, 4096
BASE_SHIFT, MAX_SHIFT, TERMINAL = 0.95, 2.05, 0.1


def ltx2_dev_sigmas(steps: int, tokens: int = MAX_SHIFT_ANCHOR) -> list[float]:
    """``LTX2Scheduler.execute(steps)``: shifted linspace, stretched so the last sigma is 0.1.

    Returns the ``steps`` non-zero sigmas (the final 0 is appended by the scheduler).
    """
    mm = (MAX_SHIFT - BASE_SHIFT) / (MAX_SHIFT_ANCHOR - BASE_SHIFT_ANCHOR)
    shift = tokens * mm + (BASE_SHIFT - mm * BASE_SHIFT_ANCHOR)
    t = [1.0 - i / steps for i in range(steps)]  # linspace(1, 0, steps + 1) without the 0
    sigmas = [math.exp(shift) / (math.exp(shift) + (1.0 / s - 1.0)) for s in t]
    scale = (1.0 - sigmas[-1]) / (1.0 - TERMINAL)
    if scale == 0.0:  # one step: the only sigma is 1.0 and there is nothing to stretch (ltx-core would divide by 0)
        return sigmas
    return [1.0 - (1.0 - s) / scale for s in sigmas]


class StagePlan(BaseModel):
    """One denoising stage of a job: its size, its sigmas and what each step costs."""

    stage: int
    width: int
    height: int
    video_tokens: int
    steps: int
    sigmas: list[float] = Field(description="the non-zero sigmas passed to the pipeline, in order")
    transformer_passes_per_step: int
    lora: str | None = Field(default=None, description="the stage-2 distilled LoRA's file name, if it is applied")


def video_tokens(width: int, height: int, num_frames: int) -> int:
    """Latent tokens at LTX-2's 32x spatial / 8x temporal compression."""
    return ((num_frames - 1) // 8 + 1) * (height // 32) * (width // 32)


def stage1_sigmas(schedule: str, steps: int) -> list[float]:
    if schedule == "distilled":
        if steps != len(DISTILLED_SIGMAS):
            raise ValueError(f"a distilled model runs its {len(DISTILLED_SIGMAS)} distilled sigmas; got steps = {steps}")
        return list(DISTILLED_SIGMAS)
    return ltx2_dev_sigmas(steps)
