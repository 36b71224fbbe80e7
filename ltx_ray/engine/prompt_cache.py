"""Prompt embeddings encoded once per worker, kept in a byte-bounded LRU cache.

Every diffusers LTX-2 call encodes its prompt (and negative prompt) with the text encoder,
Gemma 3 12B on real weights: stage 1, stage 2, each chained segment, each QC retry and each
row with the same prompt would run it again. The engine instead passes ``prompt_embeds`` /
``negative_prompt_embeds`` (and their masks) that this cache produced with the pipeline's own
``encode_prompt``, so the call skips the text encoder and the result is the same. An entry is
the text encoder's stacked hidden states: ~385 MB a prompt for Gemma 3 12B in bf16 at 1,024
tokens, so the cache is bounded in bytes and keeps what was used last.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import torch

# Two prompt / negative pairs of real LTX-2 weights (bf16, 1,024 tokens, 49 stacked layers).
DEFAULT_MAX_BYTES = 2 * 2**30


class PromptCache:
    """``encode(pipe, ...)``: the keyword arguments that replace ``prompt`` / ``negative_prompt``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self.encode_s = 0.0  # seconds spent encoding, summed over the misses

    def encode(self, pipe, prompt: str, negative_prompt: str | None, *, max_sequence_length: int, device) -> dict:
        """``prompt_embeds``, ``prompt_attention_mask`` and, for a guided call (``negative_prompt``
        not None), ``negative_prompt_embeds`` and its mask, as ``pipe.encode_prompt`` gives them."""
        key = (prompt, negative_prompt, max_sequence_length)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(entry)
        start = time.perf_counter()
        with torch.inference_mode():
            embeds, mask, negative, negative_mask = pipe.encode_prompt(
                prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=negative_prompt is not None,
                max_sequence_length=max_sequence_length, device=device,
            )
        self.encode_s += time.perf_counter() - start
        self.misses += 1
        entry = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
        if negative_prompt is not None:
            entry.update(negative_prompt_embeds=negative, negative_prompt_attention_mask=negative_mask)
        self._keep(key, entry)
        return dict(entry)

    def _keep(self, key: tuple, entry: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in entry.values())
        if size > self.max_bytes:
            return  # larger than the whole cache: used for this job only
        self._entries[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= sum(t.numel() * t.element_size() for t in dropped.values())
