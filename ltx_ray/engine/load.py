"""Plan, then load: each component read straight onto the device its placement gives it.

``LTX2Pipeline.from_pretrained`` reads every weight into host memory first (~63 GiB of bf16
for LTX-2.0, on pods capped at 64 GiB) and ``.to()`` copies it over afterwards. Here the plan
is made first, from the sizes in the safetensors headers (nothing loaded; the transformer's
with its stage-2 LoRA, the latent upsampler's beside the VAE), and each module component is
then loaded by its own class with ``device_map={"": device}`` (accelerate's low-memory path:
tensors go to the device as they are read), and handed to the pipeline whole. A CPU replica
takes the same path with every device "cpu", so CI runs it.

Offloading plans (``model``, ``group``) load on the CPU, where their weights rest, as before.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import torch

from ltx_ray.engine.placement import OffloadMode, Placement, device_room, plan_placement
from ltx_ray.engine.sizes import folder_params, header_shapes
from ltx_ray.schema.model_files import index_components
from ltx_ray.schema.profiles import ModelProfile

# model_index.json's library names -> the module their classes live in.
LIBRARIES = {"diffusers": "diffusers", "transformers": "transformers", "ltx2": "diffusers.pipelines.ltx2"}


def module_classes(root: Path) -> dict[str, type]:
    """The torch module components of the model in ``root``, by name (tokenizers, schedulers
    and processors are not modules and load as the pipeline loads them)."""
    index = json.loads((root / "model_index.json").read_text())
    out = {}
    for name in index_components(index):
        library, cls = index[name]
        if library in LIBRARIES:
            found = getattr(importlib.import_module(LIBRARIES[library]), cls, None)
            if isinstance(found, type) and issubclass(found, torch.nn.Module):
                out[name] = found
    return out


def planned_bytes(root: Path, profile: ModelProfile, dtype: torch.dtype, *, upsampler: Path | None,
                  distilled_lora: str | None, enhancer: Path | None = None) -> dict[str, int]:
    """What each component will occupy on its device, in ``dtype``, read from file headers
    (``enhancer``: an ``--enhancer`` folder whose Gemma 4 is LTX-2.5's separate prompt enhancer)."""
    size = torch.tensor([], dtype=dtype).element_size()
    sizes = {name: folder_params(_folder(root, profile, name)) * size for name in module_classes(root)}
    if enhancer is not None and profile.enhancer == "separate":
        sizes["prompt_enhancer"] = folder_params(enhancer) * size
    return _with_companions(sizes, size, upsampler=upsampler, distilled_lora=distilled_lora)


def _with_companions(sizes: dict[str, int], size: int, *, upsampler: Path | None, distilled_lora: str | None) -> dict:
    """``sizes`` with the stage-2 LoRA counted on the transformer and the upsampler as a component."""
    if distilled_lora and "transformer" in sizes:
        sizes["transformer"] += sum(math.prod(s) for s in header_shapes(Path(distilled_lora)).values()) * size
    if upsampler is not None:
        sizes["latent_upsampler"] = folder_params(upsampler) * size
    return sizes


def make_plan(sizes: dict[str, int], device: torch.device, offload: OffloadMode, placed: dict | None = None) -> Placement:
    """The plan over every GPU the replica was given (Ray sets CUDA_VISIBLE_DEVICES); one CPU device
    otherwise. What ``placed`` modules already hold on a card counts as room there."""
    if device.type != "cuda":
        return Placement(devices={n: str(device) for n in sizes}, offload="none", execution_device=str(device),
                         reason=f"single device {device}")
    return plan_placement(sizes, device_room(placed or {}), offload=offload)


def load_pipeline(root: Path, profile: ModelProfile, dtype: torch.dtype, plan: Placement, *, enhancer: Path | None = None):
    """The ``LTX2Pipeline`` of ``root``, each module loaded where ``plan`` puts it (on the CPU
    for the offloading plans), with the ``--enhancer`` components, the offload hooks set."""
    from diffusers import LTX2Pipeline

    from ltx_ray.engine.prompt import load_enhancer

    resident = plan.offload in ("none", "text_encoder")
    modules = {
        name: cls.from_pretrained(_folder(root, profile, name), dtype=dtype,
                                  device_map={"": plan.devices.get(name, "cpu") if resident else "cpu"})
        for name, cls in module_classes(root).items()
    }
    pipe = LTX2Pipeline.from_pretrained(root, dtype=dtype, **modules)
    if enhancer is not None:
        load_enhancer(pipe, str(enhancer), profile, dtype)  # placed with the rest by _apply
    _apply(pipe, plan)
    return pipe


def place_built(pipe, device: torch.device, offload: OffloadMode, dtype: torch.dtype, *, upsampler: Path | None,
                distilled_lora: str | None) -> Placement:
    """The plan of a pipeline built on its card already (bench/gpu.py's random real-size weights,
    engine/real_size.py), applied: what its modules hold on a card counts as room there."""
    modules = _modules(pipe)
    size = torch.tensor([], dtype=dtype).element_size()
    sizes = {n: sum(p.numel() * p.element_size() for p in m.parameters()) for n, m in modules.items()}
    plan = make_plan(_with_companions(sizes, size, upsampler=upsampler, distilled_lora=distilled_lora), device, offload,
                     placed=modules)
    _apply(pipe, plan)
    return plan


def group_offload(pipe, device: torch.device) -> None:
    """``--offload group``: layers stream to ``device`` one block at a time. diffusers' block level
    groups the ModuleLists that are a model's direct children: right for its own models (the
    DiT's ``transformer_blocks``), but a transformers Gemma keeps its layers at
    ``model.language_model.layers``, so the whole 22.7 GiB encoder would be one group. Those
    are grouped by their decoder layers instead (``block_modules`` leads the way down)."""
    from diffusers.hooks import apply_group_offloading
    from transformers import PreTrainedModel

    options = dict(onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
                   num_blocks_per_group=1, use_stream=device.type == "cuda")
    nested = [name for name, module in _modules(pipe).items() if isinstance(module, PreTrainedModel)]
    pipe.enable_group_offload(**options, exclude_modules=nested)
    for name in nested:
        apply_group_offloading(getattr(pipe, name), **options, block_modules=["model", "language_model"])


def mark_device_mapped(pipe, plan: Placement) -> None:
    """Tell diffusers the components are mapped to devices on purpose. Loading a LoRA
    (``_func_optionally_disable_offloading``) takes any accelerate hook on a pipeline without a
    ``hf_device_map`` for CPU offloading: it strips the hooks and turns on sequential CPU offload
    (our AlignDevicesHooks across cards) or model CPU offload (the text encoder's visiting hook)
    for the whole pipeline, the transformer included. With the map set it leaves them alone.

    Across cards diffusers runs the denoising loop on the first hooked component's card, the
    VAE's: its own code calls ``vae.encode`` (i2v, conditions) with the loop's tensors, outside
    any hook, so the loop must stay there; the transformer's hook moves each call's latents and
    embeddings over (a few MB a step) and its outputs back."""
    pipe.hf_device_map = dict(plan.devices)


def share_device_map(base, view) -> None:
    """A ``from_pipe`` view of ``base`` sees what ``mark_device_mapped`` told ``base``."""
    view.hf_device_map = base.hf_device_map


def _modules(pipe) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def _apply(pipe, plan: Placement) -> None:
    """Each module onto its planned device (a no-op where it was loaded there), or the offload hooks."""
    if plan.offload == "model":
        pipe.enable_model_cpu_offload(device=plan.execution_device)
        return
    if plan.offload == "group":
        group_offload(pipe, torch.device(plan.execution_device))
        return
    spread = len(set(plan.devices.values()) - {"cpu"}) > 1
    if spread or plan.offload == "text_encoder":
        mark_device_mapped(pipe, plan)
    for name, module in _modules(pipe).items():
        target = plan.devices.get(name, plan.execution_device)
        module.to(target)
        if spread and target != "cpu":
            from accelerate.hooks import AlignDevicesHook, add_hook_to_module

            # Spread over cards: inputs move to each component's card and outputs come back, so
            # the pipeline code runs unchanged across cards.
            add_hook_to_module(module, AlignDevicesHook(execution_device=target, io_same_device=True))


class TextEncoderVisits:
    """The ``text_encoder`` plan: the encoder rests on the CPU, is brought to the execution card
    by its first forward (accelerate's offload hook), and goes back when the engine is done
    encoding (``rest``): before the denoising, which needs the room."""

    def __init__(self, pipe, plan: Placement):
        self.hook = None
        if plan.offload == "text_encoder":
            from accelerate import cpu_offload_with_hook

            pipe.text_encoder, self.hook = cpu_offload_with_hook(pipe.text_encoder, plan.execution_device)
            mark_device_mapped(pipe, plan)

    def rest(self) -> None:
        if self.hook is not None:
            self.hook.offload()


def _folder(root: Path, profile: ModelProfile, name: str) -> Path:
    return root / (profile.transformer_subfolder if name == "transformer" else name)
