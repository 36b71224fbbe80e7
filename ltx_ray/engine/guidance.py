"""Guidance passes batched into one transformer call where diffusers allows (issue 16, ``--batch-guidance``).

diffusers 0.42.1's LTX2 pipelines (``pipeline_ltx2.py`` and its siblings, "7. Denoising loop")
make up to three transformer calls per guided step:
  1. ``cond_uncond``: the conditional pass, with the negative prompt's rows batched in front
     of it when CFG is on (``torch.cat([latents] * 2)``): CFG is one call already;
  2. ``uncond_stg``: the conditional inputs again, self-attention skipped in
     ``spatio_temporal_guidance_blocks``;
  3. ``uncond_modality``: the conditional inputs again with ``isolate_modalities=True``.
The transformer takes STG per batch row (``perturbation_mask``: 0 where those blocks skip
self-attention, 1 elsewhere), so call 2 rides in call 1 as one more row: call 1 runs on
[its rows, the conditional row again] with the mask [1, ..., 1, 0], and call 2 is answered
from that last row. ``isolate_modalities`` is one flag for the whole call, with no per-row
form in diffusers, so call 3 cannot join; it stays a call of its own.

Thin: the pipeline's loop is untouched; the transformer's forward is wrapped for the block,
as tiling.py does. Call 2 is answered from the batch only when its inputs are exactly the
row that was added (compared tensor by tensor); any other call runs as it came.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers.models.transformers.transformer_ltx2 import AudioVisualModelOutput

from ltx_ray.engine.conditioning import forward_replaced

# LTX2VideoTransformer3DModel.forward's arguments with a batch dimension.
BATCHED = ("hidden_states", "audio_hidden_states", "encoder_hidden_states", "audio_encoder_hidden_states", "timestep",
           "audio_timestep", "sigma", "audio_sigma", "encoder_attention_mask", "audio_encoder_attention_mask",
           "video_coords", "audio_coords", "video_self_attention_mask", "video_keyframes_mask")
# Arguments that say which pass a call is, rather than what it is about.
_PASS = ("spatio_temporal_guidance_blocks", "perturbation_mask", "return_dict")


@contextmanager
def batched_stg(transformer, stg_blocks: list[int], record: dict):
    """Within the block, each conditional call also runs the STG pass as its last batch row, and the
    STG call that follows is answered from it. ``record``: ``calls`` (transformer runs) and
    ``stg_batched`` (STG passes that rode along)."""
    forward = transformer.forward
    record.update(calls=0, stg_batched=0)
    pending: dict = {}  # the added row of the last batched call: its inputs and its outputs

    def batched_forward(*args, **kw):
        stg = kw.get("spatio_temporal_guidance_blocks")
        if not args and stg and pending and list(stg) == list(stg_blocks) and same_row(pending["inputs"], kw):
            record["stg_batched"] += 1
            out = pending["out"]
            pending.clear()  # one answer per batched call
            return as_output(out, kw)
        record["calls"] += 1
        rows = None if args or not _plain(kw) else _with_stg_row(kw, stg_blocks)
        if rows is None:
            return forward(*args, **kw)
        video, audio = forward(**rows)
        pending.clear()
        pending.update(inputs=kw, out=(video[-1:], None if audio is None else audio[-1:]))
        return as_output((video[:-1], None if audio is None else audio[:-1]), kw)

    with forward_replaced(transformer, batched_forward):
        yield


def _plain(kw: dict) -> bool:
    """Call 1: no STG, no modality isolation."""
    return not kw.get("spatio_temporal_guidance_blocks") and kw.get("perturbation_mask") is None \
        and not kw.get("isolate_modalities") and isinstance(kw.get("hidden_states"), torch.Tensor)


def _with_stg_row(kw: dict, stg_blocks: list[int]) -> dict | None:
    """Call 1's arguments with its last (conditional) row repeated and perturbed; None when an
    argument is not batched as expected (then nothing is added)."""
    rows = kw["hidden_states"].shape[0]
    out = dict(kw, return_dict=False)
    for name in BATCHED:
        value = kw.get(name)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != rows:
            return None
        out[name] = torch.cat([value, value[-1:]])
    hidden = kw["hidden_states"]
    out["perturbation_mask"] = torch.tensor([1.0] * rows + [0.0], device=hidden.device, dtype=hidden.dtype)
    out["spatio_temporal_guidance_blocks"] = list(stg_blocks)
    return out


def same_row(first: dict, kw: dict) -> bool:
    """Whether STG call ``kw`` asks exactly for the row added to call ``first``."""
    if kw.get("perturbation_mask") is not None or kw.keys() - set(_PASS) != first.keys() - set(_PASS):
        return False
    for name, value in kw.items():
        if name in _PASS:
            continue
        was = first[name]
        if name in BATCHED and isinstance(value, torch.Tensor):
            if not isinstance(was, torch.Tensor) or value.shape[0] != 1 or not torch.equal(value, was[-1:]):
                return False
        elif isinstance(value, torch.Tensor) or isinstance(was, torch.Tensor) or value != was:
            return False
    return True


def as_output(out: tuple, kw: dict):
    if kw.get("return_dict", True):
        return AudioVisualModelOutput(sample=out[0], audio_sample=out[1])
    return out
