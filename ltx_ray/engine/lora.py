"""Per-row LoRAs on a loaded LTX-2 (one of the three modules that touch diffusers).

A LoRA is fetched and loaded once per worker, as a named peft adapter on the shared
transformer (every ``from_pipe`` view sees it), and kept in a small LRU cache keyed by its
URI. A row activates its adapters with its scales for its own generation only: on the way
out every adapter is disabled, so the next row runs the base weights exactly.

A LoRA made for another generation is a row error naming the LoRA and that generation,
before it touches the transformer when its metadata says so (``ltx_generation``, which
ltx-ray's twins write), or when peft finds its shapes do not fit (a 2.0 LoRA on a 2.3+ DiT:
AdaLN has 9 modulation vectors there instead of 6). 2.3 and 2.5 DiTs share modules and
shapes, so only metadata tells their LoRAs apart.

``--fuse-stage2-lora`` (``fused``): stage 2's adapters merged into the weights while it runs,
so its linears skip the LoRA matmuls (+15-19% of stage 2's FLOPs at rank 384). Unmerging
subtracts in the weights' dtype and leaves rounding behind (bfloat16, deltas 10-30% of the
weights' size: 11-20% of the touched weights came back different after one merge and unmerge),
so the weights it touches are copied once, before the first merge, and copied back after
every stage 2: the next row runs the base weights bit for bit. The copy lives in host memory beside a GPU (pinned, so putting it back is
one transfer per row) and costs the size of the touched weights once per worker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import fsspec

from ltx_ray.errors import InputError

MAX_CACHED_ADAPTERS = 8
# The metadata key naming the generation a LoRA was trained for.
GENERATION_KEY = "ltx_generation"


def _cache_dir() -> Path:
    return Path(os.environ.get("LTX_RAY_CACHE", Path.home() / ".cache" / "ltx-ray")) / "loras"


def local_lora_file(uri: str) -> str:
    """A local path for ``uri``: local files as they are, remote ones copied into the cache once."""
    if "://" not in uri or uri.startswith("file://"):
        path = uri.removeprefix("file://")
        if not Path(path).is_file():
            raise FileNotFoundError(f"LoRA {uri!r}: no such file; check loras[].uri / ic_lora")
        return path
    dest = _cache_dir() / (hashlib.sha256(uri.encode()).hexdigest()[:24] + ".safetensors")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
        with fsspec.open(uri, "rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        tmp.rename(dest)
    return str(dest)


class LoraCache:
    """Adapters on one pipeline, loaded by URI and switched per row."""

    def __init__(self, pipe, generation: str, max_adapters: int = MAX_CACHED_ADAPTERS):
        self.pipe = pipe
        self.generation = generation
        self.max_adapters = max_adapters
        self._names: OrderedDict[str, str] = OrderedDict()  # uri -> adapter name, least recent first
        self._saved: dict[int, tuple] = {}  # id(weight) -> (weight, its copy before any merge): fused()

    def adapter(self, uri: str) -> str:
        """The adapter name of ``uri``, loading it (and evicting the least recent) if needed."""
        if uri in self._names:
            self._names.move_to_end(uri)
            return self._names[uri]
        name = "lora_" + hashlib.sha256(uri.encode()).hexdigest()[:12]
        path = local_lora_file(uri)
        made_for = _metadata(path).get(GENERATION_KEY)
        fix = f"use a LoRA trained for {self.generation}, or run this row with --model of the generation it was made for"
        if made_for and made_for != self.generation:
            raise InputError(f"LoRA {uri} (loras[].uri / ic_lora): made for {made_for} (its {GENERATION_KEY} metadata), but the loaded model is "
                             f"{self.generation}; {fix}")
        try:
            self.pipe.load_lora_weights(path, adapter_name=name)
        except (RuntimeError, ValueError) as exc:
            if "size mismatch" not in str(exc):
                raise
            self._forget(name)
            first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
            raise InputError(f"LoRA {uri} (loras[].uri / ic_lora): its shapes do not fit this {self.generation} transformer, so it was made for "
                             f"another generation ({first}); {fix}") from None
        self._names[uri] = name
        while len(self._names) > self.max_adapters:
            _, old = self._names.popitem(last=False)
            self.pipe.delete_adapters(old)
        return name

    def _forget(self, name: str) -> None:
        """Drop what a failed load may have left of adapter ``name`` on the transformer."""
        transformer = self.pipe.transformer
        if name in (getattr(transformer, "peft_config", None) or {}):
            self.pipe.delete_adapters(name)

    @contextmanager
    def active(self, specs: list[tuple[str, float]]):
        """Apply ``[(uri, scale), ...]`` inside the block and none outside it."""
        if not specs:
            yield
            return
        scales: dict[str, float] = {}
        for uri, scale in specs:
            name = self.adapter(uri)
            scales[name] = scales.get(name, 0.0) + scale  # the same LoRA twice adds up
        try:
            self.pipe.enable_lora()
            self.pipe.set_adapters(list(scales), list(scales.values()))
            yield
        finally:
            # Disabled, not deleted: the next row that names it reuses the loaded weights,
            # and a row without it runs the base weights exactly.
            self.pipe.disable_lora()

    @contextmanager
    def fused(self, specs: list[tuple[str, float]], record: dict):
        """Inside ``active(specs)``: those adapters merged into the transformer's weights (diffusers'
        ``fuse_lora``, at the scales ``active`` set), and the weights they touched put back exactly
        on the way out. ``record``: lora_fused, and the seconds merging and putting back took."""
        import torch
        from peft.tuners.tuners_utils import BaseTunerLayer

        names = {self.adapter(uri) for uri, _ in specs}
        start = time.perf_counter()
        weights = [m.get_base_layer().weight for m in self.pipe.transformer.modules()
                   if isinstance(m, BaseTunerLayer) and names & set(getattr(m, "lora_A", {}))]
        for weight in weights:
            if id(weight) not in self._saved:
                pinned = weight.device.type == "cuda"
                self._saved[id(weight)] = (weight, torch.empty(weight.shape, dtype=weight.dtype, pin_memory=pinned)
                                           .copy_(weight.detach()))
        self.pipe.fuse_lora(components=["transformer"], adapter_names=sorted(names))
        record.update(lora_fused=True, fuse_s=round(time.perf_counter() - start, 4))
        try:
            yield
        finally:
            start = time.perf_counter()
            self.pipe.unfuse_lora(components=["transformer"])  # peft's bookkeeping; the values come next
            with torch.no_grad():
                for weight in weights:
                    weight.copy_(self._saved[id(weight)][1], non_blocking=True)
            record["restore_s"] = round(time.perf_counter() - start, 4)

    @staticmethod
    def reference_downscale_factor(uri: str) -> int:
        """An IC-LoRA's ``reference_downscale_factor`` metadata (official files carry it); default 1."""
        return int(float(_metadata(local_lora_file(uri)).get("reference_downscale_factor", 1)))

    @staticmethod
    def reference_temporal_scale_factor(uri: str) -> int:
        """An IC-LoRA's ``reference_temporal_scale_factor`` metadata (trained on a control video at
        1/S of the frame rate, ltx-pipelines ``iclora_utils``); default 1."""
        return int(float(_metadata(local_lora_file(uri)).get("reference_temporal_scale_factor", 1)))


def _metadata(path: str) -> dict[str, str]:
    """A .safetensors file's header metadata (read without loading the tensors)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        return fh.metadata() or {}
