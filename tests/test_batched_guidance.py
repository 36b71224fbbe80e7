"""--batch-guidance: the STG pass rides in the conditional (and CFG) transformer call as one more
batch row; modality isolation stays a call of its own (engine/guidance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltx_ray.engine.guidance import batched_stg
from ltx_ray.engine.types import JobInputs
from ltx_ray.schema.levers import Levers
from ltx_ray.schema.manifest import ManifestRow


class Doubler(torch.nn.Module):
    """A stand-in transformer: each row's prediction is its input doubled; it notes each call's batch."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, hidden_states, audio_hidden_states, spatio_temporal_guidance_blocks=None, perturbation_mask=None,
                return_dict=True, **kw):
        self.batches.append(hidden_states.shape[0])
        if perturbation_mask is None:  # as diffusers: STG blocks without a mask perturb every row
            perturbation_mask = torch.full([hidden_states.shape[0]], 0.0 if spatio_temporal_guidance_blocks else 1.0)
        mask = perturbation_mask
        return hidden_states * 2 + (1 - mask)[:, None], audio_hidden_states * 2  # +1 on perturbed rows


def test_the_stg_call_is_answered_from_the_batch_only_when_it_asks_for_the_added_row():
    model, record = Doubler(), {}
    h, a = torch.tensor([[1.0], [2.0]]), torch.tensor([[10.0], [20.0]])
    common = dict(timestep=torch.tensor([5.0, 5.0]), num_frames=1, isolate_modalities=False, return_dict=False)
    with batched_stg(model, [1], record):
        video, audio = model(hidden_states=h, audio_hidden_states=a, spatio_temporal_guidance_blocks=None, **common)
        stg_kw = dict(common, timestep=torch.tensor([5.0]), spatio_temporal_guidance_blocks=[1])
        stg = model(hidden_states=h[1:], audio_hidden_states=a[1:], **stg_kw)
        other = model(hidden_states=h[:1], audio_hidden_states=a[:1], **stg_kw)  # not the added row: runs itself
        modality = model(hidden_states=h[1:], audio_hidden_states=a[1:], **dict(common, isolate_modalities=True,
                                                                                timestep=torch.tensor([5.0])))
    assert model.batches == [3, 1, 1]  # the STG pass rode in the first call; the odd one and modality ran alone
    assert video.tolist() == [[2.0], [4.0]] and audio.tolist() == [[20.0], [40.0]]
    assert stg[0].tolist() == [[5.0]] and stg[1].tolist() == [[40.0]]  # the added row, perturbed
    assert other[0].tolist() == [[3.0]] and modality[0].tolist() == [[4.0]]
    assert record == {"calls": 3, "stg_batched": 1}
    assert "forward" not in model.__dict__  # the wrapper is gone after the block


def predictions(engine) -> list[torch.Tensor]:
    """The video prediction every transformer call hands the pipeline (an answered STG call too)."""
    out: list[torch.Tensor] = []
    engine._pipes["t2v"].transformer.register_forward_hook(lambda m, args, kw, result: out.append(result[0].clone()),
                                                           with_kwargs=True)
    return out


def block_batches(engine) -> list[int]:
    """The batch size of every call of the first transformer block (below any forward wrapper)."""
    batches: list[int] = []
    block = engine._pipes["t2v"].transformer.transformer_blocks[0]
    block.register_forward_pre_hook(lambda m, args, kw: batches.append((args[0] if args else kw["hidden_states"]).shape[0]),
                                    with_kwargs=True)
    return batches


@pytest.fixture(scope="module")
def twin_23(model_cache):
    """LTX-2.3's tiny twin: its real transformer config has perturbed_attn true, so STG changes the
    prediction. (The tiny model's and LTX-2.0's configs have it false: diffusers 0.42.1 then runs
    the STG pass as a copy of the conditional one.)"""
    from ltx_ray.engine.twins import resolve_twin
    from ltx_ray.engine.weights import resolve_model

    return resolve_model(str(resolve_twin("ltx-2.3")))


@pytest.mark.e2e
@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_a_guided_step_makes_two_transformer_calls_instead_of_three_with_the_same_predictions(twin_23, task):
    """LTX-2.3 dev guides with CFG, STG and modality isolation: 4 passes a step, which diffusers
    makes in 3 transformer calls (CFG's 2 rows, STG's 1, modality's 1); batched, 2 (3 rows, then 1).
    Tolerance: each prediction the pipeline gets within 1e-4 (relative) of diffusers' own (a
    batch of 3 sums in another order), the frames within 1 of 255."""
    from PIL import Image

    from ltx_ray.engine.ltx2 import LTX2Engine

    make = dict(device="cpu", dtype="float32", profile=twin_23.profile)
    plain, batched = LTX2Engine(twin_23.path, **make), LTX2Engine(twin_23.path, **make, levers=Levers(batch_guidance=True))
    extra = {"image_uri": "a.png"} if task == "i2v" else {}
    inputs = JobInputs(image=Image.radial_gradient("L").convert("RGB").resize((128, 96))) if task == "i2v" else JobInputs()
    row = ManifestRow(job_id="g", prompt="a lamp", width=128, height=96, num_frames=9, seed=4, steps=2, **extra).resolve(
        twin_23.profile).model_copy(update={"stg_blocks": [1]})  # the twin has 2 blocks; the real one 48
    assert row.transformer_passes == 4
    seen, seen_plain = block_batches(batched), block_batches(plain)
    answers, calls = predictions(batched), predictions(plain)

    got, want = batched.generate(row, inputs), plain.generate(row, inputs)

    assert seen == [3, 1] * 2 and seen_plain == [2, 1, 1] * 2
    # The pipeline got the same three predictions a step, the STG one (the 2nd) from the batch's added row.
    assert len(answers) == len(calls) == 6
    for a, b in zip(answers, calls):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (calls[1] - calls[0][1:]).abs().max() > 1e-2  # STG changes the prediction here: the check can fail
    assert got.info["stages"][0]["transformer_calls"] == 4 and got.info["stages"][0]["stg_batched"] == 2
    assert "stg_batched" not in want.info["stages"][0]
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1
