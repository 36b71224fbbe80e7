"""The placement plan: pure, so it is tested on CPU with LTX-2's real component sizes."""

from __future__ import annotations

import pytest

from ltx_ray.engine.placement import GiB, plan_placement
from ltx_ray.errors import PlacementError

# bf16 sizes of the real LTX-2 components (19B transformer, Gemma-3-12B encoder)
LTX2_BF16 = {
    "transformer": 38 * GiB,
    "text_encoder": 24 * GiB,
    "connectors": 2 * GiB,
    "vae": 1 * GiB,
    "audio_vae": GiB // 4,
    "vocoder": GiB // 8,
}


def test_one_h200_holds_everything():
    plan = plan_placement(LTX2_BF16, {"cuda:0": 139 * GiB})
    assert plan.offload == "none" and set(plan.devices.values()) == {"cuda:0"}


def test_two_h100s_split_transformer_and_text_encoder():
    plan = plan_placement(LTX2_BF16, {"cuda:0": 79 * GiB, "cuda:1": 79 * GiB})
    assert plan.offload == "none"
    assert plan.devices["transformer"] != plan.devices["text_encoder"]
    assert plan.execution_device == plan.devices["transformer"]


def test_no_device_is_overfilled():
    free = {"cuda:0": 48 * GiB, "cuda:1": 40 * GiB}
    plan = plan_placement(LTX2_BF16, free, activation_headroom=0.1)
    for dev, cap in free.items():
        assert sum(LTX2_BF16[c] for c, d in plan.devices.items() if d == dev) <= cap * 0.9


def test_a_24gb_card_needs_offloading_and_says_how():
    with pytest.raises(PlacementError, match="transformer.*--offload model / group"):
        plan_placement(LTX2_BF16, {"cuda:0": 24 * GiB}, offload="none")
    assert plan_placement(LTX2_BF16, {"cuda:0": 24 * GiB}).offload == "group"
    assert plan_placement(LTX2_BF16, {"cuda:0": 60 * GiB}).offload == "model"


def test_explicit_offload_keeps_components_on_the_cpu():
    plan = plan_placement(LTX2_BF16, {"cuda:0": 80 * GiB}, offload="group")
    assert plan.offload == "group" and set(plan.devices.values()) == {"cpu"} and plan.execution_device == "cuda:0"


def test_the_tiny_model_fits_a_cpu_device(tiny_model):
    import torch
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(tiny_model.path)
    sizes = {
        name: sum(p.numel() * p.element_size() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    plan = plan_placement(sizes, {"cpu": 8 * GiB})
    assert plan.offload == "none" and set(plan.devices) == set(sizes)
