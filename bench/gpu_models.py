"""The models ``bench/gpu.py`` runs on, one at a time, and the engines and runners over them, made
as ``ltx_ray.job.build.build_runner`` makes them (an ``LTX2Engine`` and a ``JobRunner`` over an
``OutputStore``; no Ray).

- ``tiny`` (or a model folder) loads as a run loads it: ``resolve_model``, then ``LTX2Engine``
  reads the folder; each engine has its own modules.
- A generation (``ltx-2.0``, ``ltx-2.3``, ``ltx-2.5``) is built at real size with random weights
  on the device (``ltx_ray/engine/real_size.py``) once, and every engine over it shares those
  modules (``LTX2Engine(pipeline=...)``); its folder holds only the companions (upsampler, LoRA).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path

from bench.gpu_configs import Config, Geometry, Lever
from bench.gpu_report import significant

# A per-row LoRA's rank on the real-size transformer (style LoRAs ship at 16-64).
LORA_RANK = 32
PROMPT = "a red sneaker turning slowly on a white table, studio light, take {index}"


class BenchModel:
    """One model on the device and the engines made over it, one per profile and lever."""

    def __init__(self, name: str, *, device: str, dtype: str, offload: str, shrink: bool):
        import torch

        from ltx_ray.engine.ltx2 import DTYPES
        from ltx_ray.engine.twins import TWIN_GENERATIONS
        from ltx_ray.schema.model import ResolvedModel

        self.name, self.device, self.dtype, self.offload, self.shrink = name, device, dtype, offload, shrink
        self.torch_device = torch.device(device)
        self.flops_cache: dict[tuple, int] = {}
        self._engines: dict[tuple, object] = {}
        self.dirty: str | None = None  # a config left the shared transformer changed (LoRA, compile, fp8)
        self.random_weights = name in TWIN_GENERATIONS
        start = time.perf_counter()
        if self.random_weights:
            from ltx_ray.engine import real_size

            self.folder = Path(tempfile.mkdtemp(prefix=f"bench-gpu-{name}-"))  # the companions; removed by close()
            self.components = real_size.build_components(name, device, DTYPES[dtype], shrink=shrink)
            real_size.write_companions(self.folder, name, device, DTYPES[dtype], shrink=shrink)
            self.model = ResolvedModel(
                source=f"random:{name}", path=str(self.folder), model_id=f"random/{name}" + ("-twin" if shrink else ""),
                revision="random", profile=self.profile("distilled"), upsampler=str(self.folder / "latent_upsampler"),
            )
        else:
            from ltx_ray.engine.weights import resolve_model

            self.components = None
            self.model = resolve_model(name)
            self.folder = Path(self.model.path)
        self.load_s = time.perf_counter() - start

    def profile(self, recipe: str):
        """The profile a recipe runs with: the generation's distilled one, or its guided (dev / full) one."""
        from ltx_ray.schema.profiles import PROFILES

        if not self.random_weights:
            return self.model.profile  # tiny's (guidance_scale 1 makes a distilled-recipe row unguided) or the folder's
        if recipe == "distilled":
            return PROFILES[f"{self.name}-distilled"]
        return PROFILES.get(f"{self.name}-dev") or PROFILES[f"{self.name}-full"]

    def params_b(self) -> dict[str, float]:
        """Billions of parameters per component (of the first engine's pipeline for a folder model)."""
        import torch

        components = self.components or (self.engine("distilled", {}).stages.base.components)
        return {n: significant(sum(p.numel() for p in m.parameters()) / 1e9)
                for n, m in components.items() if isinstance(m, torch.nn.Module)}

    def attention_tokens(self) -> float:
        """The video tokens at which a pass's attention FLOPs (4 T^2 d L) equal its weights' (2 P T)."""
        transformer = self.engine("distilled", {}).stages.base.transformer
        c = transformer.config
        params = sum(p.numel() for p in transformer.parameters())
        return params / (2 * c.num_attention_heads * c.attention_head_dim * c.num_layers)

    def engine(self, recipe: str, engine_kwargs: dict):
        """The engine for a recipe and a lever's options (made once, kept until the lever is undone)."""
        from ltx_ray.engine.ltx2 import LTX2Engine

        from ltx_ray.schema.levers import Levers

        profile = self.profile(recipe)
        key = (profile.name, tuple(sorted(engine_kwargs.items())))
        if key not in self._engines:
            engine_kwargs = dict(engine_kwargs)
            levers = {k: engine_kwargs.pop(k) for k in Levers.model_fields if k in engine_kwargs}
            if levers:  # the profile's levers with this one on
                engine_kwargs["levers"] = profile.levers.model_copy(update=levers)
            if self.components is not None:
                from diffusers import LTX2Pipeline

                kwargs = dict(pipeline=LTX2Pipeline(**self.components))
            else:
                kwargs = dict(distilled_lora=self.model.distilled_lora, enhancer=self.model.enhancer)
            self._engines[key] = LTX2Engine(self.model.path, device=self.device, dtype=self.dtype, profile=profile,
                                            offload=self.offload, upsampler=self.model.upsampler, **kwargs,
                                            **engine_kwargs)
        return self._engines[key]

    def runner(self, engine, out: Path, run_id: str):
        from ltx_ray.job.runner import JobRunner
        from ltx_ray.storage.store import OutputStore

        return JobRunner(engine, OutputStore(str(out)), self.model, device=self.device, dtype=self.dtype, run_id=run_id)

    def job(self, config: Config, geometry: Geometry, index: int, job_id: str):
        """One clip of ``config`` at ``geometry`` as a manifest row resolves it; its own prompt, so
        each clip encodes its prompt as distinct jobs do (no prompt-cache hit)."""
        from ltx_ray.schema.manifest import ManifestRow

        row = ManifestRow(
            job_id=job_id, prompt=PROMPT.format(index=index), seed=index, width=geometry.width, height=geometry.height,
            num_frames=geometry.num_frames, two_stage=geometry.two_stage,
            guidance_scale=1.0 if config.recipe == "distilled" else None,
            loras=[{"uri": self.lora_uri()}] if config.lora else None,
        )
        return row.resolve(self.profile(config.recipe))

    def lora_uri(self) -> str:
        """A per-row LoRA for this model: the tiny model's style LoRA, or a random real-size one."""
        if self.components is None:
            return str(self.folder / "loras" / "style.safetensors")
        path = self.folder / "loras" / "style.safetensors"
        if not path.exists():
            from ltx_ray.engine.real_size import write_random_lora

            write_random_lora(self.components["transformer"], path, rank=LORA_RANK if not self.shrink else 4,
                              generation=self.name)
        return str(path)

    def after(self, config: Config) -> None:
        """Put the model back as the next configuration expects it: a lever's engine is dropped (an
        attention backend reset on the shared transformer); compiled or quantized modules and loaded
        LoRA adapters make the shared transformer dirty, rebuilt before the next configuration."""
        lever: Lever | None = config.lever
        if lever is not None:
            key = (self.profile(config.recipe).name, tuple(sorted(lever.engine_kwargs.items())))
            engine = self._engines.pop(key, None)
            if engine is not None and self.components is not None and lever.undo == "reset_attention":
                engine.stages.base.transformer.reset_attention_backend()
            elif engine is not None and self.components is not None:
                self.dirty = lever.name
            del engine
        if config.lora and self.components is not None:
            self.dirty = "lora adapters"
        self.free()

    def ensure_clean(self) -> float:
        """Rebuild a dirty shared transformer (and drop the engines over it); the seconds it took."""
        if self.dirty is None:
            return 0.0
        from ltx_ray.engine.ltx2 import DTYPES
        from ltx_ray.engine.real_size import build_model, component_configs

        start = time.perf_counter()
        self._engines.clear()
        self.components["transformer"] = None
        self.free()
        config = component_configs(self.name, self.shrink)["transformer"]
        self.components["transformer"] = build_model(config, self.device, DTYPES[self.dtype], seed=1)
        self.flops_cache.clear()
        self.dirty = None
        return time.perf_counter() - start

    def free(self) -> None:
        free_device(self.device)

    def close(self) -> None:
        """Drop every engine and module, so the next model has the card (and the companions' folder)."""
        self._engines.clear()
        if self.components is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.components = None
        self.free()


def free_device(device: str) -> None:
    """Collect what is no longer referenced and give the card back the memory it held."""
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
