"""The engine on plans for 1, 2 and 4 cards, run on fake cards (tests/fake_cards.py): every op
sees its tensors on one card, every component runs with its weights where the plan put them, and
a LoRA load leaves the placement alone. Real component sizes, the tiny model's modules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.fake_cards import FakeCards
from tests.test_placement import H100, LTX2_TWO_STAGE

pytestmark = pytest.mark.e2e

SMALL = {"width": 128, "height": 64, "num_frames": 9, "seed": 1}
TONE = (0.2 * np.sin(np.arange(24000) / 24000 * 2 * np.pi * 440)).astype(np.float32)[None]


def _jobs():
    from ltx_ray.engine.types import JobInputs

    return [
        ({"job_id": "t2v", "prompt": "p", "two_stage": True}, JobInputs()),  # upsampler, stage-2 LoRA, decode
        ({"job_id": "i2v", "prompt": "p", "image_uri": "a.png", "two_stage": True},
         JobInputs(image=Image.new("RGB", (128, 64), (200, 30, 40)))),  # vae.encode at both sizes
        ({"job_id": "a2v", "prompt": "p", "audio_uri": "v.wav"}, JobInputs(audio=TONE, audio_rate=24000)),  # audio VAE
    ]


@pytest.mark.parametrize("cards", [1, 2, 4])
def test_every_call_finds_its_inputs_and_weights_on_one_card(tiny_model, cards):
    import torch

    from ltx_ray.engine.load import TextEncoderVisits, _apply, share_device_map
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.placement import plan_placement
    from ltx_ray.schema.manifest import ManifestRow

    plan = plan_placement(LTX2_TWO_STAGE, {f"cuda:{i}": H100 for i in range(cards)})
    assert plan.offload == ("text_encoder" if cards == 1 else "none")
    engine = LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile)
    base = engine._pipes["t2v"]
    fake = FakeCards()
    calls: list[tuple[str, set, set]] = []  # (component, cards of its inputs, cards of its weights) per call

    def record(name):
        pending = []

        def before(module, args, kwargs):  # the inputs as the caller hands them over
            pending.append({fake.card(a) for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor) and a.dim()})

        def after(module, args, kwargs, output):  # the weights as they ran (an offload hook moves them in forward)
            calls.append((name, pending.pop(), {fake.card(p) for p in module.parameters()}))

        return before, after

    for name, module in base.components.items():
        if isinstance(module, torch.nn.Module):
            before, after = record(name)
            module.register_forward_pre_hook(before, with_kwargs=True)
            module.register_forward_hook(after, with_kwargs=True)
    with fake:  # what engine/load.py does after loading, on the fake cards
        _apply(base, plan)
        for view in engine._pipes.values():
            share_device_map(base, view)
        engine.text_encoder = TextEncoderVisits(base, plan)
        engine.placement = engine.stages.placement = engine.decoders.placement = plan
        for row, inputs in _jobs():
            clip = engine.generate(ManifestRow(**row, **SMALL).resolve(tiny_model.profile), inputs)
            assert clip.frames.shape == (9, 64, 128, 3) and clip.audio is not None
        resting = {name: fake.card(next(m.parameters())) for name, m in base.components.items()
                   if isinstance(m, torch.nn.Module)}
    where = {**plan.devices}
    if plan.offload == "text_encoder":
        where["text_encoder"] = plan.execution_device  # it visits the card to encode
    for name, inputs, weights in calls:
        assert weights == {where[name]}, (name, weights)
    assert {name for name, _, _ in calls} >= {"transformer", "text_encoder", "connectors", "vocoder"}
    assert resting == {name: plan.devices[name] for name in resting}  # the text encoder back on the CPU too
