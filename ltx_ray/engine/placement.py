"""Where a replica's model components go: a pure function of their sizes and the devices' memory.

A replica may own several GPUs (``--gpus-per-replica``). LTX-2's components differ a lot in
size (19B transformer, 12B Gemma encoder, small VAE / vocoder / connectors), so they are
placed whole, largest first, each on the device with the most room left: the transformer
and the text encoder land on different cards when one card cannot hold both. The sizes are
what will be on the card: the transformer's with its stage-2 LoRA (~7 GB for the rank-384
distilled LoRA), and the x2 latent upsampler, which goes where the VAE is (the upsample
pipeline denormalises with the VAE's statistics on the VAE's card).

When not everything fits, in order (``--offload auto``):
1. ``text_encoder``: everything resident but the text encoder, which rests on the CPU and
   visits the execution card to encode; the prompt-embedding cache means once per prompt per
   worker (LTX-2.0 on one 80 GB H100: 48 GiB resident, Gemma's 22.7 GiB visits);
2. ``model``: every component rests on the CPU and visits the card when used
   (``--offload model``);
3. ``group``: layers stream in groups, for cards smaller than one component (``--offload group``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ltx_ray.errors import PlacementError

GiB = 1024**3
OffloadMode = Literal["auto", "none", "model", "group"]
# Components that must share a card with another: the upsampler works on the VAE's card.
BESIDE = {"latent_upsampler": "vae"}
RESTING = "text_encoder"  # what the text_encoder policy leaves on the CPU


class Placement(BaseModel):
    """The plan for one replica."""

    devices: dict[str, str] = Field(description="component -> device it lives on ('cpu' when offloaded)")
    offload: Literal["none", "text_encoder", "model", "group"]
    execution_device: str = Field(description="device that runs the denoising loop")
    reason: str

    def input_device(self, component: str) -> str:
        """Where the inputs of ``component``'s own methods go (``vae.encode``, the upsampler, the
        audio VAE): its card when components are spread over cards, since accelerate's hook
        moves inputs only into ``forward``; the execution device when offloaded, where the
        offload hooks bring the weights."""
        if self.offload in ("none", "text_encoder") and self.devices.get(component, "cpu") != "cpu":
            return self.devices[component]
        return self.execution_device


def plan_placement(
    component_bytes: dict[str, int],
    device_free_bytes: dict[str, int],
    *,
    offload: OffloadMode = "auto",
    activation_headroom: float = 0.2,
) -> Placement:
    """Place components on devices, or choose an offload mode when they do not fit.

    ``activation_headroom`` is the fraction of each device kept free for activations (the
    attention over thousands of video tokens needs several GiB at 768x512x121; the VAE decode
    streams in tiles above its threshold, engine/decode.py). A text encoder visiting a card
    needs no such room: nothing else runs while it encodes.
    """
    if not device_free_bytes:
        raise PlacementError("no devices to place the model on")
    first = next(iter(device_free_bytes))
    if offload in ("model", "group"):
        return Placement(
            devices={name: "cpu" for name in component_bytes},
            offload=offload,
            execution_device=first,
            reason=f"--offload {offload}: components stay on the CPU and visit {first} when used",
        )
    capacity = {dev: int(free * (1 - activation_headroom)) for dev, free in device_free_bytes.items()}
    groups = _groups(component_bytes)
    devices = _fit(groups, capacity, component_bytes)
    if devices is not None:
        biggest = max(component_bytes, key=component_bytes.get)
        return Placement(devices=devices, offload="none", execution_device=devices[biggest],
                         reason=f"all components fit on {', '.join(sorted(set(devices.values())))}")
    largest = max(component_bytes.values())
    if offload == "none":
        name = max(groups, key=groups.get)
        raise PlacementError(
            f"component {name!r} and the rest need {sum(groups.values()) / GiB:.1f} GiB but the devices hold "
            f"{sum(capacity.values()) / GiB:.1f} GiB (after keeping {activation_headroom:.0%} for activations); "
            "use more --gpus-per-replica, a smaller --dtype, or --offload model / group"
        )
    resting = _text_encoder_rests(component_bytes, groups, capacity, device_free_bytes)
    if resting is not None:
        return resting
    mode = "model" if largest <= max(capacity.values()) else "group"
    return plan_placement(component_bytes, device_free_bytes, offload=mode, activation_headroom=activation_headroom)


def _groups(component_bytes: dict[str, int]) -> dict[str, int]:
    """Bytes per placement unit: a component with what must sit beside it."""
    groups = {name: size for name, size in component_bytes.items() if BESIDE.get(name) not in component_bytes}
    for name, host in BESIDE.items():
        if name in component_bytes and host in component_bytes:
            groups[host] += component_bytes[name]
    return groups


def _fit(groups: dict[str, int], capacity: dict[str, int], names) -> dict[str, str] | None:
    """Largest first, each on the device with the most room left; None when one does not fit."""
    room = dict(capacity)
    devices: dict[str, str] = {}
    for name, size in sorted(groups.items(), key=lambda kv: kv[1], reverse=True):
        target = max(room, key=room.get)
        if size > room[target]:
            return None
        devices[name] = target
        room[target] -= size
    for name, host in BESIDE.items():
        if host in devices and name in names:
            devices[name] = devices[host]
    return devices


def _text_encoder_rests(component_bytes, groups, capacity, free) -> Placement | None:
    """The ``text_encoder`` policy, where the rest fits resident and the encoder can visit the
    execution card (its free memory less what is resident there)."""
    if RESTING not in groups:
        return None
    rest = {name: size for name, size in groups.items() if name != RESTING}
    devices = _fit(rest, capacity, component_bytes)
    if devices is None:
        return None
    execution = devices[max(rest, key=rest.get)]
    resident_there = sum(size for name, size in rest.items() if devices[name] == execution)
    if resident_there + groups[RESTING] > free[execution]:
        return None
    devices[RESTING] = "cpu"
    return Placement(
        devices=devices, offload="text_encoder", execution_device=execution,
        reason=f"all but the text encoder fit on {', '.join(sorted(set(devices.values()) - {'cpu'}))}; the text "
               f"encoder ({component_bytes[RESTING] / GiB:.1f} GiB) rests on the CPU and visits {execution} to encode "
               "(once per prompt: the embeddings are cached)",
    )


def device_room(modules: dict) -> dict[str, int]:
    """Free bytes on every visible card, counting what ``modules`` already hold there as room:
    components built on the card (``LTX2Engine(pipeline=...)``) are placed, not loaded a second time."""
    import torch

    free = {f"cuda:{i}": torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())}
    for module in modules.values():
        for p in module.parameters():
            if p.device.type == "cuda":
                free[f"cuda:{p.device.index}"] += p.numel() * p.element_size()
    return free


def use_cpu_threads(count: int) -> None:
    """A CPU replica's share of the node's cores for torch (not just the one CPU it reserves in Ray)."""
    import torch

    torch.set_num_threads(count)
