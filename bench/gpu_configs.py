"""What ``bench/gpu.py`` measures: its configurations, most important first, and what each reports.

A configuration is one model, one recipe (distilled or guided), one size and at most one lever
(an engine option that should make it faster), run as clips through ``JobRunner``. A lever is
one ``Lever`` entry: its ``LTX2Engine`` keyword arguments. One the engine does not take yet is
reported as skipped with the reason, so wiring a new engine option is adding or fixing its entry.
"""

from __future__ import annotations

import inspect
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Clip sizes of a real run, and the small ones the tiny model (CPU) runs the same plan at.
Size = Literal["768x512x121", "1080p"]


class Geometry(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    num_frames: int
    two_stage: bool = False

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}x{self.num_frames}" + (" two-stage" if self.two_stage else "")


GEOMETRIES: dict[str, dict[Size, Geometry]] = {
    "full": {"768x512x121": Geometry(width=768, height=512, num_frames=121),
             # preset "pro": stage 1 at 960x544, x2 upsampler, refined at 1920x1088 (32,640 video tokens)
             "1080p": Geometry(width=1920, height=1088, num_frames=121, two_stage=True)},
    "small": {"768x512x121": Geometry(width=256, height=160, num_frames=9),
              "1080p": Geometry(width=384, height=256, num_frames=9, two_stage=True)},
}
# Before a configuration's clips: one small job of the same kind loads what loads on first use
# (the latent upsampler, a LoRA) and starts the kernels; a compiled lever warms up at its own shape.
WARMUP = {"full": Geometry(width=512, height=320, num_frames=9), "small": Geometry(width=128, height=128, num_frames=9)}


class Lever(BaseModel):
    """An engine option measured on and off side by side (off: the configuration it names as baseline)."""

    model_config = ConfigDict(frozen=True)

    name: str
    engine_kwargs: dict = Field(description="LTX2Engine keyword arguments that turn it on")
    undo: Literal["reset_attention", "rebuild_transformer"] = Field(
        description="how a shared pipeline is put back after it: the attention backend reset, or a fresh transformer "
        "(compiled or quantized modules stay so)")
    cuda_only: bool = True
    compiles: bool = Field(default=False, description="it compiles: dynamo is reset before it and it warms up at its own shape")
    note: str = ""


LEVERS = (
    Lever(name="attention=flash", engine_kwargs={"attention": "flash"}, undo="reset_attention",
          note="--attention flash (flash-attn package); diffusers' flash backends reject LTX-2's text mask"),
    Lever(name="attention=sage", engine_kwargs={"attention": "sage"}, undo="reset_attention",
          note="--attention sage (sageattention package)"),
    Lever(name="attention=_native_cudnn", engine_kwargs={"attention": "_native_cudnn"}, undo="reset_attention",
          note="diffusers' cuDNN SDPA backend: not an --attention choice yet; here to see whether it should be"),
    # The engine's Levers (ltx_ray/schema/levers.py), given as their field names.
    Lever(name="compile", engine_kwargs={"compile": True}, undo="rebuild_transformer", compiles=True,
          note="torch.compile of the transformer blocks; dynamo is reset before it, compile time is its warm-up"),
    Lever(name="fp8", engine_kwargs={"quantize": "fp8"}, undo="rebuild_transformer", note="fp8 weights (--quantize fp8)"),
)


class Config(BaseModel):
    """One measured configuration."""

    model_config = ConfigDict(frozen=True)

    name: str
    model: str = Field(description="tiny, or the generation built at real size with random weights")
    recipe: Literal["distilled", "guided"]
    geometry: Geometry
    lever: Lever | None = None
    baseline: str | None = Field(default=None, description="the configuration this one is compared with (its lever off)")
    clips: int = Field(ge=1, description="clips measured (after the warm-up)")
    in_flight: int = Field(default=1, description="jobs in flight: 2 = two threads feeding one JobRunner")
    lora: bool = Field(default=False, description="each clip applies a per-row LoRA")


def lever_problem(lever: Lever, device: str) -> str | None:
    """Why ``lever`` cannot run here (the engine lacks its option, the machine its kernels), or None."""
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.errors import RunFatal
    from ltx_ray.job.build import check_attention

    from ltx_ray.schema.levers import Levers

    accepted = {*inspect.signature(LTX2Engine.__init__).parameters, *Levers.model_fields}
    missing = [k for k in lever.engine_kwargs if k not in accepted]
    if missing:
        return f"LTX2Engine has no {', '.join(missing)} option yet"
    if lever.cuda_only and not device.startswith("cuda"):
        return f"needs a CUDA device (--device is {device})"
    attention = lever.engine_kwargs.get("attention")
    if attention:
        try:
            check_attention(attention, device)
        except RunFatal as exc:
            return str(exc)
    return None


def plan(models: list[str], scale: str, clips: int, queue_jobs: int) -> list[Config]:
    """Every configuration, most important first, so a run cut short still has those:
    the first model's distilled 768x512x121, each lever beside it, 1080p two-stage, both at queue
    depth and with a LoRA; each other model's 768x512x121 and 1080p; then the first model's guided recipe."""
    sizes = GEOMETRIES[scale]
    first, rest = models[0], models[1:]

    def config(model, recipe, size, suffix="", **kw) -> Config:
        geometry = sizes[size]
        name = f"{model} {recipe} {geometry.label}" + (f" {suffix}" if suffix else "")
        return Config(name=name, model=model, recipe=recipe, geometry=geometry, clips=kw.pop("clips", clips), **kw)

    base = config(first, "distilled", "768x512x121")
    out = [base]
    out += [config(first, "distilled", "768x512x121", lever.name, lever=lever, baseline=base.name) for lever in LEVERS]
    out.append(config(first, "distilled", "1080p"))
    out.append(config(first, "distilled", "768x512x121", f"queue {queue_jobs}x2", clips=queue_jobs, in_flight=2))
    out.append(config(first, "distilled", "768x512x121", "lora", lora=True, baseline=base.name))
    for model in rest:
        out += [config(model, "distilled", "768x512x121"), config(model, "distilled", "1080p")]
    out.append(config(first, "distilled", "1080p", "queue 2x2", clips=2, in_flight=2))
    out.append(config(first, "guided", "768x512x121", clips=1))
    return out
