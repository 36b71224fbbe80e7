"""Fault injection for tests: an engine that kills its own worker process once.

Named as what it is: a fault injector around the real LTX-2 engine. A job whose metadata
holds ``crash_once_marker`` kills the actor process the first time it is generated (the
marker file records that it happened); every other call is the real generation.
"""

from __future__ import annotations

import os
from pathlib import Path


class CrashOnceEngine:
    def __init__(self, model, device: str, dtype: str):
        from ltx_ray.engine.ltx2 import LTX2Engine  # here: the stand-ins below load no diffusers

        self.inner = LTX2Engine(model.path, device=device, dtype=dtype, profile=model.profile)
        self.placement = self.inner.placement

    @property
    def audio_sample_rate(self) -> int:
        return self.inner.audio_sample_rate

    def generate(self, job, inputs, on_step=None):
        marker = job.metadata.get("crash_once_marker")
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-job, as on an OOM kill or a lost node
        return self.inner.generate(job, inputs, on_step)


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda.OutOfMemoryError is, which is how ltx-ray recognises one."""


class FaultyDeviceEngine:
    """A named stand-in for LTX2Engine (no model, no torch) for failure-handling tests: a small
    clip of noise with a tone, or the fault a job's metadata names:
    ``device_lost_once`` / ``oom_once`` (the first time, recorded in ``marker``) and
    ``device_lost_always``, raised as torch raises them."""

    placement = None
    audio_sample_rate = 24000

    def __init__(self, model, device: str, dtype: str):
        self.freed = 0

    def free(self) -> None:
        self.freed += 1

    def generate(self, job, inputs, on_step=None):
        import numpy as np

        from ltx_ray.engine.types import Clip

        fault, marker = job.metadata.get("fault"), job.metadata.get("marker")
        first = marker is not None and not Path(marker).exists()
        if first:
            Path(marker).write_text(str(os.getpid()))
        if fault == "device_lost_always" or (fault == "device_lost_once" and first):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if fault == "oom_once" and first:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (stand-in)")
        rng = np.random.default_rng(job.seed)
        frames = rng.integers(0, 255, (job.num_frames, job.height, job.width, 3), dtype=np.uint8)
        t = np.arange(round(job.duration_s * self.audio_sample_rate)) / self.audio_sample_rate
        audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
        return Clip(frames=frames, fps=job.fps, audio=audio, sample_rate=self.audio_sample_rate,
                    info={"replica_pid": os.getpid(), "freed": self.freed})


class UnloadableEngine:
    """A named stand-in whose weights never load, on any replica (a corrupt checkpoint, say)."""

    def __init__(self, model, device: str, dtype: str):
        from ltx_ray.errors import ModelNotFound

        raise ModelNotFound(f"{model.path}: transformer/diffusion_pytorch_model.safetensors is truncated (stand-in)")


class RankKillingEngine(FaultyDeviceEngine):
    """The noise stand-in as one rank of a replica's group (``--parallel``): it proves the ranks
    share a process group (an all-reduce of ones when it loads: ``world`` in the sidecar), and a
    job whose metadata names ``kill_rank`` ends that rank's process the first time (recorded
    in ``kill_marker``), as a rank lost to a dead GPU or an OOM kill would."""

    def __init__(self, model, device: str, dtype: str, parallel=None):
        import torch
        import torch.distributed as dist

        super().__init__(model, device, dtype)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        ones = torch.ones(1)
        if dist.is_initialized():
            dist.all_reduce(ones)  # every rank of the group loads at once: they meet here
        self.world = int(ones.item())
        self.parallel = parallel

    def generate(self, job, inputs, on_step=None):
        marker = job.metadata.get("kill_marker")
        if job.metadata.get("kill_rank") == self.rank and marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)
        clip = super().generate(job, inputs, on_step)
        # engine_parallel: what build_engine handed the engine (only an engine that takes parallel= gets it)
        clip.info.update(rank=self.rank, world=self.world,
                         engine_parallel=self.parallel.model_dump() if self.parallel is not None else None)
        return clip
