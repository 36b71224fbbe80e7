"""What a job will cost before it runs: transformer FLOPs and a GPU memory estimate per stage.

``ltx-ray plan`` prints these per row; ``Job.denoise_cost`` (tokens x steps x passes, what a
run orders its jobs by) is the linear part of the same count. Pure arithmetic over a
``TransformerShape`` read from the model's config and safetensors headers
(``engine/sizes.py``), so no weights are loaded.

Per transformer pass over ``Tv`` video, ``Ta`` audio and ``S`` text tokens:
- every weight matrix costs ``2 x its size x the tokens it multiplies`` (video, audio, the
  prompt for the text cross-attention's keys and values, one for the timestep embeddings);
- every attention ``4 Tq Tk d`` (``QK^T`` and ``AV``, 2 FLOPs per multiply-add), with ``d``
  its width, ``Tq`` / ``Tk`` its query and key tokens.
``tests/test_plan.py`` checks this against torch's FLOP counter on the real-layout twins.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class TransformerShape(BaseModel):
    """What the cost of one DiT pass depends on, read from a model folder."""

    linear_params: dict[str, int] = Field(description="weight-matrix parameters by the tokens they multiply")
    attention_dims: dict[str, int] = Field(description="summed attention widths by '<query tokens>/<key tokens>'")
    video_dim: int = Field(description="video stream width (heads x head_dim)")
    ff_mult: int = 4
    audio_tokens_per_s: float = Field(description="audio latent frames per second (sample rate / hop / scale factor)")
    text_tokens: int = Field(description="the padded prompt length every pass attends to")
    weights_params: dict[str, int] = Field(description="parameters per component folder the profile loads")
    upsampler_params: int = Field(default=0, description="the x2 latent upsampler's, loaded for two-stage jobs")


class StageCost(BaseModel):
    stage: int
    width: int
    height: int
    video_tokens: int
    audio_tokens: int
    steps: int
    sigmas: list[float]
    transformer_passes_per_step: int
    tflops: float = Field(description="transformer FLOPs of the whole stage, in 10^12")


class RowPlan(BaseModel):
    """One row's plan: what will run and what it costs."""

    job_id: str
    profile: str
    generation: str
    task: str
    width: int
    height: int
    num_frames: int = Field(description="with seconds auto: the most the duration head may pick, what is costed")
    seconds: float
    auto_seconds: bool = Field(default=False, description="the model picks the length; the cost is an upper bound")
    size_from_source: bool = Field(default=False, description="retake: the size and length are the source video's, read "
                                   "when the job runs; the plan costs the row's own values (or the defaults)")
    stages: list[StageCost]
    denoise_cost: int = Field(description="tokens x steps x passes: the number a run orders its jobs by")
    tflops: float = Field(description="transformer FLOPs of every stage, in 10^12")
    weights_gib: float = Field(description="every loaded component's weights in the run's dtype")
    peak_gpu_gib: float = Field(description="weights plus the largest stage's transformer activations (VAE decode is tiled)")


def pass_flops(shape: TransformerShape, video_tokens: int, audio_tokens: int) -> float:
    """FLOPs of one transformer pass (batch 1)."""
    tokens = {"video": video_tokens, "audio": audio_tokens, "text": shape.text_tokens, "one": 1}
    linear = sum(2 * params * tokens[kind] for kind, params in shape.linear_params.items())
    attention = 0
    for pair, width in shape.attention_dims.items():
        queries, keys = pair.split("/")
        attention += 4 * tokens[queries] * tokens[keys] * width
    return linear + attention


def audio_tokens(shape: TransformerShape, seconds: float) -> int:
    return math.ceil(seconds * shape.audio_tokens_per_s)


def activation_bytes(shape: TransformerShape, video_tokens: int, batch: int, dtype: str) -> int:
    """The live activations of one block at its widest: the hidden states, q/k/v/out and the
    feed-forward's hidden layer, for ``batch`` sequences (2 under CFG, run as one batch)."""
    return batch * video_tokens * shape.video_dim * (5 + shape.ff_mult) * DTYPE_BYTES[dtype]


def plan_job(job, profile, shape: TransformerShape, dtype: str) -> RowPlan:
    """The plan of a resolved ``Job`` on a ``profile`` model of ``shape`` run in ``dtype``."""
    ta = audio_tokens(shape, job.duration_s) if job.audio else 0
    stages, peak_act = [], 0
    for s in job.stages:
        flops = pass_flops(shape, s.video_tokens, ta) * s.steps * s.transformer_passes_per_step
        stages.append(StageCost(
            stage=s.stage, width=s.width, height=s.height, video_tokens=s.video_tokens, audio_tokens=ta, steps=s.steps,
            sigmas=s.sigmas, transformer_passes_per_step=s.transformer_passes_per_step, tflops=_sig(flops / 1e12),
        ))
        peak_act = max(peak_act, activation_bytes(shape, s.video_tokens, min(2, s.transformer_passes_per_step), dtype))
    params = sum(shape.weights_params.values()) + (shape.upsampler_params if job.two_stage else 0)
    weights = params * DTYPE_BYTES[dtype]
    return RowPlan(
        job_id=job.job_id, profile=profile.name, generation=profile.generation, task=job.task, width=job.width, height=job.height, num_frames=job.num_frames,
        seconds=round(job.duration_s, 3), auto_seconds=job.auto_seconds is not None,
        size_from_source=job.retake is not None, stages=stages, denoise_cost=job.denoise_cost,
        tflops=_sig(sum(s.tflops for s in stages)), weights_gib=_sig(weights / GIB),
        peak_gpu_gib=_sig((weights + peak_act) / GIB),
    )


def _sig(x: float) -> float:
    """Four significant digits: a tiny model's 0.003 TFLOP and a real one's 9,000 both read."""
    return float(f"{x:.4g}")
