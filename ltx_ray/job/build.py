"""The one place an engine and a JobRunner are put together, for a Ray Data actor and a
Serve replica alike, so the two cannot drift (offload, stand-ins, run ids)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Literal

from pydantic import Field

from ltx_ray.engine.placement import OffloadMode, use_cpu_threads
from ltx_ray.errors import RunFatal
from ltx_ray.schema.levers import LeverFlags, Levers
from ltx_ray.schema.parallel import Parallel

# --attention (RunConfig and ServeArgs alike): the transformer's kernel, through diffusers'
# attention dispatcher, and the package each kernel needs.
Attention = Literal["native", "flash", "sage"]
ATTENTION_HELP = ("Attention kernel of the transformer (diffusers' attention dispatcher): native (torch SDPA), flash "
                  "(the flash-attn package) or sage (sageattention); a kernel that is not installed, or not on a CPU, "
                  "is a fatal error naming the package")
ATTENTION_PACKAGES = {"flash": "flash_attn", "sage": "sageattention"}


def check_attention(attention: str, device: str) -> None:
    """Before any replica starts: a kernel the machine lacks is fatal, not a traceback in every replica."""
    package = ATTENTION_PACKAGES.get(attention)
    if package is None:
        return
    if not device.startswith("cuda"):
        raise RunFatal(f"--attention {attention}: its kernels run on CUDA GPUs and --device is {device}; use --attention native")
    if importlib.util.find_spec(package) is None:
        raise RunFatal(f"--attention {attention} needs the {package.replace('_', '-')} package, which is not installed: "
                       f"pip install {package.replace('_', '-')} (built for your torch and CUDA), or use --attention native")


def check_levers(levers: Levers, device: str, dtype: str) -> None:
    """Before any replica starts, what the run's settings alone rule out (the replica checks its
    card's compute capability and its compilers itself: engine/levers.py)."""
    if levers.quantize == "fp8":
        if not device.startswith("cuda"):
            raise RunFatal(f"--quantize fp8: float8 matmuls run on CUDA GPUs of compute capability 8.9 or newer "
                           f"(L4, L40S, H100, H200, B200) and --device is {device}; use --quantize none")
        if dtype != "bfloat16":
            raise RunFatal(f"--quantize fp8 computes in bfloat16 (torchao's per-row float8) and --dtype is {dtype}; "
                           "use --dtype bfloat16")
        if importlib.util.find_spec("torchao") is None:
            raise RunFatal("--quantize fp8 needs the torchao package, which is not installed: "
                           'pip install -c requirements.lock -e ".[dev]" (it is in the lock), or use --quantize none')


class RunnerSpec(LeverFlags):
    """What a replica needs to build its engine, store and runner (the levers' settings included)."""

    model: str = Field(description="--model: 'tiny', a local folder, an object-store URI or a hub id")
    out: str = Field(description="Output root the runner writes videos, sidecars and results rows to")
    device: str = "cpu"
    dtype: str = "float32"
    profile: str | None = None
    upsampler: str | None = Field(default=None, description="--upsampler: replaces the profile's latent_upsampler/")
    distilled_lora: str | None = Field(default=None, description="--distilled-lora: replaces the profile's stage-2 LoRA")
    enhancer: str | None = Field(default=None, description="--enhancer: the prompt enhancer enhance_prompt rows use")
    run_id: str
    torch_threads: int | None = None
    offload: OffloadMode = "auto"
    attention: Attention = "native"
    # "ltx2", or "module:callable" building another engine with the same generate()
    # interface (called with model=ResolvedModel, device=str, dtype=str): the fault tests'
    # and benchmarks' stand-ins.
    engine: str = "ltx2"
    # None, or "module:callable" building a stand-in for the whole JobRunner (called with
    # config=RunnerSpec, node_id=str; returns an object whose run(job) gives a ResultRow).
    # Scheduling benchmarks (bench/fleet.py, bench/capacity.py) run dozens of actors on a
    # few cores: a stand-in engine would still import torch and mux an mp4 per job, which
    # measures the benchmark machine instead of the schedule. The Ray Data plan is unchanged.
    runner: str | None = None
    # How the replica splits a clip over its ranks (issue 18). With ranks > 1 every rank builds
    # this spec's engine inside one process group (ltx_ray.replica.group); rank 0 alone writes.
    parallel: Parallel = Parallel()
    rank_timeout_s: float = Field(default=600.0, gt=0, description="Longest a rank may wait in a collective (or "
                                  "for its peers' end of a job) before the replica counts as broken and is rebuilt")
    pool: str | None = Field(default=None, description="The --pool this replica serves (recorded on its rows)")


def build_runner(spec: RunnerSpec, node_id: str | None = None, lead=None):
    """Load the engine once and return the JobRunner (or the named stand-in) over it.

    ``lead``: for rank 0 of a replica of several ranks, a function that wraps the loaded
    engine so that every generate call is handed to the other ranks too (``replica.group``).
    """
    if spec.runner:
        return load_object(spec.runner)(config=spec, node_id=node_id)

    from ltx_ray.job.runner import JobRunner
    from ltx_ray.storage.store import OutputStore

    model, engine = build_engine(spec)
    if lead is not None:
        engine = lead(engine)
    return JobRunner(
        engine, OutputStore(spec.out), model, device=spec.device, dtype=spec.dtype, run_id=spec.run_id, node_id=node_id,
        parallel=spec.parallel, pool=spec.pool,
    )


def build_engine(spec: RunnerSpec):
    """The resolved model and its loaded engine: all a rank other than 0 holds (it writes nothing)."""
    from ltx_ray.engine.weights import resolve_model

    if spec.torch_threads:
        use_cpu_threads(spec.torch_threads)
    model = resolve_model(spec.model, spec.profile, upsampler=spec.upsampler, distilled_lora=spec.distilled_lora,
                          enhancer=spec.enhancer)
    if spec.engine == "ltx2":
        from ltx_ray.engine.ltx2 import LTX2Engine

        factory = LTX2Engine
        kwargs = dict(profile=model.profile, offload=spec.offload, attention=spec.attention,
                      levers=spec.levers(model.profile.levers), upsampler=model.upsampler,
                      distilled_lora=model.distilled_lora, enhancer=model.enhancer)
        engine_args = (model.path,)
    else:
        factory, kwargs, engine_args = load_object(spec.engine), {"model": model}, ()
    if spec.parallel.ranks > 1:
        # Until an engine takes `parallel=` (issue 18, the engine half), every rank computes
        # the whole clip: slower than a split, but the same clip, so the group stays correct.
        if _accepts(factory, "parallel"):
            kwargs["parallel"] = spec.parallel
    return model, factory(*engine_args, device=spec.device, dtype=spec.dtype, **kwargs)


def _accepts(factory, name: str) -> bool:
    params = inspect.signature(factory).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def load_object(spec: str):
    """The object named by "module:attribute"."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
