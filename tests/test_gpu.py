"""Smoke tests on a real accelerator (skipped without CUDA)."""

from __future__ import annotations

import pytest

from ltx_ray.engine.ltx2 import LTX2Engine
from ltx_ray.engine.types import JobInputs
from ltx_ray.schema.manifest import ManifestRow

pytestmark = pytest.mark.gpu


def _job(engine):
    return ManifestRow(job_id="gpu", prompt="a cat", width=256, height=160, num_frames=17).resolve(engine.profile)


def test_the_engine_places_and_runs_the_tiny_model_on_cuda(tiny_model):
    import torch

    engine = LTX2Engine(tiny_model.path, device="cuda", dtype="bfloat16", profile=tiny_model.profile, offload="none")
    assert engine.placement.offload == "none"
    assert all(d.startswith("cuda") for d in engine.placement.devices.values())
    clip = engine.generate(_job(engine), JobInputs())
    assert clip.frames.shape == (17, 160, 256, 3)
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize("offload", ["model", "group"])
def test_offloading_runs_on_cuda(tiny_model, offload):
    engine = LTX2Engine(tiny_model.path, device="cuda", dtype="bfloat16", profile=tiny_model.profile, offload=offload)
    assert engine.placement.offload == offload
    assert engine.generate(_job(engine), JobInputs()).frames.shape == (17, 160, 256, 3)
