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


# The same with what a two-stage replica also holds (ltx2-family.md, "Hardware facts"): the
# transformer 35.2 GiB with the rank-384 distilled LoRA (~7 GB), Gemma 3 12B 22.7 GiB, the
# x2 latent upsampler (~1 GB), which must sit with the VAE.
LTX2_TWO_STAGE = {"transformer": int((35.2 + 6.5) * GiB), "text_encoder": int(22.7 * GiB), "connectors": int(2.7 * GiB),
                  "vae": int(2.3 * GiB), "audio_vae": GiB // 8, "vocoder": GiB // 16, "latent_upsampler": GiB}
H100, H200 = 79 * GiB, 139 * GiB  # free memory of an idle card


def _resident(plan, sizes, device):
    return sum(size for name, size in sizes.items() if plan.devices[name] == device)


def test_one_h100_keeps_the_transformer_resident_and_lets_the_text_encoder_visit():
    plan = plan_placement(LTX2_TWO_STAGE, {"cuda:0": H100})
    assert plan.offload == "text_encoder" and plan.devices["text_encoder"] == "cpu"
    assert {d for n, d in plan.devices.items() if n != "text_encoder"} == {"cuda:0"}
    assert _resident(plan, LTX2_TWO_STAGE, "cuda:0") <= 0.8 * H100  # room for the denoising's activations
    assert _resident(plan, LTX2_TWO_STAGE, "cuda:0") + LTX2_TWO_STAGE["text_encoder"] <= H100  # room for its visit
    assert plan.input_device("text_encoder") == plan.execution_device == "cuda:0"
    assert "visits cuda:0" in plan.reason


@pytest.mark.parametrize("cards,free", [(1, H200), (2, H100), (4, H100)])
def test_one_two_and_four_cards_hold_the_two_stage_model_resident_with_the_upsampler_beside_the_vae(cards, free):
    devices = {f"cuda:{i}": free for i in range(cards)}
    plan = plan_placement(LTX2_TWO_STAGE, devices)
    assert plan.offload == "none" and set(plan.devices) == set(LTX2_TWO_STAGE)
    assert plan.devices["latent_upsampler"] == plan.devices["vae"]
    for device in devices:  # the LoRA and the upsampler are counted: no card past its share
        assert _resident(plan, LTX2_TWO_STAGE, device) <= 0.8 * free
    if cards > 1:
        assert plan.devices["transformer"] != plan.devices["text_encoder"]


def test_a_48gb_card_cannot_hold_the_transformer_with_its_lora_and_streams_layers():
    assert plan_placement(LTX2_TWO_STAGE, {"cuda:0": 47 * GiB}).offload == "group"


def test_the_plan_counts_from_the_file_headers_what_loading_puts_in_memory(tiny_model):
    """engine/load.py plans before loading: the header sizes must be the loaded modules' bytes,
    the transformer's with its stage-2 LoRA, and the upsampler's."""
    from pathlib import Path

    import torch
    from diffusers import LTX2Pipeline
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel
    from safetensors.torch import load_file

    from ltx_ray.engine.load import planned_bytes

    root = Path(tiny_model.path)
    lora = root / tiny_model.profile.distilled_lora
    sizes = planned_bytes(root, tiny_model.profile, torch.float32, upsampler=root / "latent_upsampler", distilled_lora=str(lora))
    pipe = LTX2Pipeline.from_pretrained(root)

    def nbytes(module):  # tied weights (Gemma's lm_head is its embeddings) once
        return sum({t.data_ptr(): t.numel() * t.element_size() for t in module.state_dict().values()}.values())

    loaded = {name: nbytes(m) for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
    loaded["transformer"] += sum(t.numel() * t.element_size() for t in load_file(lora).values())
    loaded["latent_upsampler"] = nbytes(LTX2LatentUpsamplerModel.from_pretrained(root / "latent_upsampler"))
    assert sizes == loaded


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


def test_a_components_own_methods_get_their_inputs_on_its_card_or_on_the_execution_device_when_offloaded():
    """vae.encode, the upsampler and the audio VAE are called outside ``forward``, so accelerate's
    hook does not move their inputs: ltx-ray sends them to the component's own card (two H100s:
    the VAE beside the text encoder, the transformer alone), or where offloading brings weights."""
    spread = plan_placement(LTX2_BF16, {"cuda:0": 80 * GiB, "cuda:1": 80 * GiB}, offload="none")
    assert spread.devices["transformer"] != spread.devices["vae"]  # the layout that crashed two-stage jobs
    assert spread.input_device("vae") == spread.devices["vae"] != spread.execution_device
    assert spread.input_device("audio_vae") == spread.devices["audio_vae"]
    offloaded = plan_placement(LTX2_BF16, {"cuda:0": 24 * GiB}, offload="model")
    assert offloaded.input_device("vae") == offloaded.execution_device == "cuda:0"


@pytest.mark.e2e
def test_the_engine_asks_the_vae_and_audio_vae_cards_for_their_inputs(tiny_model, tmp_path):
    """A recording placement on the tiny engine: two-stage i2v (image encode, upsampler) and a2v
    (the track's encode) ask for the component whose method they call, never the loop's device."""
    import numpy as np
    from PIL import Image

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.placement import Placement
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow

    class Recording(Placement):
        def input_device(self, component: str) -> str:
            asked.append(component)
            return super().input_device(component)

    asked: list[str] = []
    engine = LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile)
    engine.placement = engine.stages.placement = Recording(**engine.placement.model_dump())
    small = {"width": 128, "height": 64, "num_frames": 9, "seed": 1}
    engine.generate(ManifestRow(job_id="i", prompt="p", image_uri="a.png", two_stage=True, **small).resolve(tiny_model.profile),
                    JobInputs(image=Image.new("RGB", (128, 64), (200, 30, 40))))
    assert asked.count("vae") >= 2  # the full-size image encode and the upsampler's card
    asked.clear()
    track = (0.2 * np.sin(np.arange(24000) / 24000 * 2 * np.pi * 440)).astype(np.float32)[None]
    engine.generate(ManifestRow(job_id="a", prompt="p", audio_uri="v.wav", **small).resolve(tiny_model.profile),
                    JobInputs(audio=track, audio_rate=24000))
    assert asked == ["audio_vae"]


@pytest.mark.e2e
def test_group_offload_streams_the_text_encoder_by_its_decoder_layers_not_as_one_group(tiny_model):
    """diffusers' block level alone makes Gemma one group (its layers sit at
    model.language_model.layers): the whole 22.7 GiB encoder on the card at once."""
    import torch
    from diffusers import LTX2Pipeline
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING

    from ltx_ray.engine.load import group_offload

    pipe = LTX2Pipeline.from_pretrained(tiny_model.path)
    before = pipe.encode_prompt("a red fox", do_classifier_free_guidance=False, device="cpu")[0]
    group_offload(pipe, torch.device("cpu"))  # the CPU as the card: the grouping is the same
    encoder = pipe.text_encoder
    groups = {}
    for module in encoder.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
        if hook is not None:
            groups[id(hook.group)] = hook.group
    layers = encoder.model.language_model.layers
    owner = {id(m): gid for gid, g in groups.items() for m in g.modules}
    assert len({owner[id(layer)] for layer in layers}) == len(layers)  # one group per decoder layer
    total = sum(p.numel() for p in encoder.parameters())
    assert max(sum(p.numel() for m in g.modules for p in m.parameters()) for g in groups.values()) < total / 2
    after = pipe.encode_prompt("a red fox", do_classifier_free_guidance=False, device="cpu")[0]
    assert torch.equal(before, after)
