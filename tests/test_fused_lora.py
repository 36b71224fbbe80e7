"""--fuse-stage2-lora: stage 2's LoRAs merged into the weights while it runs, the base weights
put back bit for bit after it (engine/lora.py ``LoraCache.fused``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ltx_ray.engine.types import JobInputs
from ltx_ray.schema.levers import Levers
from ltx_ray.schema.manifest import ManifestRow

pytestmark = pytest.mark.e2e  # engines of their own: the LoRAs they load stay out of the session's


def base_weights(transformer) -> dict[str, torch.Tensor]:
    """The transformer's own parameters by their pre-LoRA names (peft moves them under base_layer)."""
    return {n.replace(".base_layer", ""): p.detach().clone() for n, p in transformer.named_parameters() if "lora_" not in n}


def merged_in_stage_2(transformer, stage_2_tokens: int) -> list[bool]:
    """For each transformer call of stage 2 (told apart by its token count): were its LoRA layers merged?"""
    from peft.tuners.tuners_utils import BaseTunerLayer

    seen: list[bool] = []

    def before(module, args, kw):
        if kw["hidden_states"].shape[1] == stage_2_tokens:
            layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
            seen.append(bool(layers) and all(m.merged for m in layers))

    transformer.register_forward_pre_hook(before, with_kwargs=True)
    return seen


@pytest.mark.parametrize("row_lora", [False, True], ids=["stage-2 LoRA", "with a row's LoRA"])
def test_a_fused_stage_2_gives_the_unfused_frames_and_the_next_row_runs_the_base_weights(tiny_model, row_lora):
    """Tolerance: at most 1 of 255 in any pixel (float32; W + BA and x W + (x B) A round differently)."""
    from ltx_ray.engine.ltx2 import LTX2Engine

    make = dict(device="cpu", dtype="float32", profile=tiny_model.profile)
    plain = LTX2Engine(tiny_model.path, **make)
    fused = LTX2Engine(tiny_model.path, **make, levers=Levers(fuse_stage2_lora=True))
    loras = [{"uri": str(Path(tiny_model.path) / "loras" / "style.safetensors"), "scale": 0.7}] if row_lora else []
    row = ManifestRow(job_id="p", prompt="a lamp", width=256, height=192, num_frames=9, seed=2, two_stage=True, steps=2,
                      loras=loras).resolve(tiny_model.profile)
    transformer = fused._pipes["t2v"].transformer
    before = base_weights(transformer)
    tokens = row.stages[1].video_tokens
    merged, unmerged = merged_in_stage_2(transformer, tokens), merged_in_stage_2(plain._pipes["t2v"].transformer, tokens)

    got, want = fused.generate(row, JobInputs()), plain.generate(row, JobInputs())

    assert merged and all(merged) and not any(unmerged)  # every stage-2 call ran merged weights; without the lever none
    assert got.info["stages"][1]["lora_fused"] is True and want.info["stages"][1]["lora_fused"] is False
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1
    after = base_weights(transformer)
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)  # bit for bit
    one_stage = row.model_copy(update={"two_stage": False, "loras": []})
    assert np.array_equal(fused.generate(one_stage, JobInputs()).frames, plain.generate(one_stage, JobInputs()).frames)
