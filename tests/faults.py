"""Fault injection for tests: an engine that kills its own worker process once.

Named as what it is: a fault injector around the real LTX-2 engine. A job whose metadata
holds ``crash_once_marker`` kills the actor process the first time it is generated (the
marker file records that it happened); every other call is the real generation.
"""

from __future__ import annotations

import os
from pathlib import Path

from ltx_ray.engine.ltx2 import LTX2Engine


class CrashOnceEngine:
    def __init__(self, model, device: str, dtype: str):
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
