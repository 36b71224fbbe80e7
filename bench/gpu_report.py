"""What ``bench/gpu.py`` reports per configuration, and how long it expects one to take (``--budget-s``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bench.gpu_configs import Config
from bench.gpu_measure import STAGES

# Dense bf16 peak TFLOP/s (vendor datasheets, without sparsity), matched in order against the device name.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
               "H100": 756.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0}
# Seconds guessed for what has not been measured yet in this run (real-size builds on a GPU; compiling).
FIRST_LOAD_GUESS_S = {"cuda": 180.0, "cpu": 30.0}
COMPILE_GUESS_S = 120.0


class ConfigResult(BaseModel):
    """One configuration's numbers; per clip unless named otherwise."""

    name: str
    model: str
    recipe: str
    size: str
    lever: str | None = None
    note: str | None = Field(default=None, description="what the lever is")
    baseline: str | None = Field(default=None, description="the configuration with this one's lever off")
    status: Literal["ok", "failed", "skipped", "not_run"]
    reason: str | None = Field(default=None, description="why it was skipped, not run, or failed")
    profile: str | None = None
    clips: int = 0
    in_flight: int = 1
    lora: bool = Field(default=False, description="each clip applied a per-row LoRA")
    s_per_clip: float | None = Field(default=None, description="wall seconds / clips (with two in flight, overlapped)")
    clips_per_gpu_hour: float | None = Field(default=None, description="3600 / s_per_clip")
    speedup: float | None = Field(default=None, description="the baseline's s_per_clip / this one's")
    s_per_step: dict[str, float] = Field(default_factory=dict, description="denoise seconds per step, per stage")
    mfu: float | None = Field(default=None, description="transformer FLOPs / denoise seconds / the card's dense bf16 peak")
    tflop_per_clip: float | None = None
    steps: dict[str, float] = Field(default_factory=dict)
    passes_per_step: dict[str, float] = Field(
        default_factory=dict, description="batch-1 transformer passes per step as run (CFG's batch of 2 counts 2)")
    expected_passes_per_step: dict[str, int] = Field(default_factory=dict, description="Job.stages' count")
    per_token_timesteps: bool | None = Field(default=None, description="the transformer got a timestep per token")
    peak_gpu_gib: float | None = None
    peak_host_gib: float | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict, description=", ".join(STAGES))
    warmup_s: float | None = Field(default=None, description="the warm-up job (a compiled lever: its compilation)")
    wall_s: float | None = None
    placement: str | None = None
    dynamo: dict | None = Field(default=None, description="compiled graphs and graph breaks (compile lever)")
    videos: list[str] = Field(default_factory=list)


def not_measured(config: Config, status: str, reason: str) -> ConfigResult:
    return ConfigResult(name=config.name, model=config.model, recipe=config.recipe, size=config.geometry.label,
                        lever=config.lever.name if config.lever else None, note=config.lever.note if config.lever else None,
                        baseline=config.baseline, status=status,
                        reason=reason, in_flight=config.in_flight, lora=config.lora)


def summarize(config: Config, jobs: list, rows: list, wall: float, clock, flops: int, peaks, peak_tflops: float | None,
              **extra) -> ConfigResult:
    """The result of ``rows`` (ResultRows of ``jobs``' clips) made in ``wall`` seconds."""
    n = len(rows)
    seconds = {stage: clock.seconds[stage] / n for stage in STAGES if clock.seconds[stage]}
    seconds["mux"] = sum(r.timings.get("mux", 0.0) for r in rows) / n
    # Everything a row spent (fetch, generate, mux, upload, sidecar) that no hook above saw.
    row_total = sum(v for r in rows for k, v in r.timings.items() if k != "encode_prompt") / n
    seconds["other"] = max(0.0, row_total - sum(seconds.values()))
    denoise = [s for s in ("denoise_1", "denoise_2") if clock.steps[s]]
    denoise_s = sum(clock.seconds[s] for s in denoise)
    expected = {f"denoise_{p.stage}": p.transformer_passes_per_step for p in jobs[0].stages}
    s_per_clip = wall / n
    return ConfigResult(
        name=config.name, model=config.model, recipe=config.recipe, size=config.geometry.label,
        lever=config.lever.name if config.lever else None, note=config.lever.note if config.lever else None,
        baseline=config.baseline, status="ok",
        profile=jobs[0].profile, clips=n, in_flight=config.in_flight, lora=config.lora,
        s_per_clip=round(s_per_clip, 4), clips_per_gpu_hour=round(3600 / s_per_clip, 2),
        s_per_step={s: round(clock.seconds[s] / clock.steps[s], 4) for s in denoise},
        mfu=round(flops / denoise_s / (peak_tflops * 1e12), 4) if peak_tflops and denoise_s else None,
        tflop_per_clip=significant(flops / n / 1e12),
        steps={s: clock.steps[s] / n for s in denoise},
        passes_per_step={s: round(clock.passes[s] / clock.steps[s], 3) for s in denoise},
        expected_passes_per_step=expected, per_token_timesteps=clock.per_token_timesteps,
        peak_gpu_gib=peaks.gpu_gib(), peak_host_gib=peaks.host_gib(),
        stage_seconds={k: round(v, 4) for k, v in seconds.items()}, wall_s=round(wall, 3),
        videos=[r.video_uri for r in rows], **extra,
    )


def significant(x: float) -> float:
    """Four significant digits: a tiny model's 0.0003 TFLOP and a real one's 9,000 both read."""
    return float(f"{x:.4g}")


def peak_tflops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def denoise_units(job, attention_tokens: float) -> float:
    """A job's denoising work in video-token passes, attention's quadratic share included: a pass over
    T tokens costs ~ 2 P T + 4 T^2 d L FLOPs = 2 P (T + T^2 / attention_tokens), attention_tokens = P / (2 d L)."""
    return sum(s.steps * s.transformer_passes_per_step * (s.video_tokens + s.video_tokens**2 / attention_tokens)
               for s in job.stages)


class Estimates:
    """Seconds a configuration will take, from what this run has measured: the reference clip's
    stages, its denoising scaled by work (``denoise_units``) and its decode and mux by pixels."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.load_s: float | None = None
        self.references: dict[str, tuple[ConfigResult, object, float]] = {}  # model -> result, its job, attention_tokens

    def measured(self, model: str, result: ConfigResult, job, attention_tokens: float) -> None:
        if result.status == "ok" and result.in_flight == 1 and result.lever is None and not result.lora:
            self.references.setdefault(model, (result, job, attention_tokens))

    def clip_s(self, model: str, job) -> float | None:
        ref = self.references.get(model) or next(iter(self.references.values()), None)
        if ref is None:
            return None
        result, ref_job, tokens = ref
        s = result.stage_seconds
        fixed = s.get("text_encode", 0) + s.get("audio_decode", 0) + s.get("gc", 0) + s.get("other", 0)
        denoise = s.get("denoise_1", 0) + s.get("denoise_2", 0)
        by_pixels = s.get("vae_decode", 0) + s.get("mux", 0) + s.get("upsample", 0)
        pixels = job.width * job.height * job.num_frames / (ref_job.width * ref_job.height * ref_job.num_frames)
        return fixed + denoise * denoise_units(job, tokens) / denoise_units(ref_job, tokens) + by_pixels * pixels

    def config_s(self, config: Config, model: str, warmup_job, job, *, loading: bool) -> float | None:
        """None where nothing is measured yet to estimate from (the first configuration always runs)."""
        clip = self.clip_s(model, job)
        if clip is None:
            return None
        warm = self.clip_s(model, warmup_job) + (COMPILE_GUESS_S if config.lever and config.lever.compiles else 0)
        load = (self.load_s or FIRST_LOAD_GUESS_S[self.device_type]) if loading else 0.0
        return load + warm + config.clips * clip
