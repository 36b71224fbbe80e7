"""Where a replica's model components go: a pure function of their sizes and the devices' memory.

A replica may own several GPUs (``--gpus-per-replica``). LTX-2's components differ a lot in
size (19B transformer, 12B Gemma encoder, small VAE / vocoder / connectors), so they are
placed whole, largest first, each on the device with the most room left: the transformer
and the text encoder land on different cards when one card cannot hold both. What does not
fit anywhere needs offloading (``--offload model`` moves whole components to the GPU when
used; ``group`` streams groups of layers, for cards smaller than one component).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ltx_ray.errors import PlacementError

GiB = 1024**3
OffloadMode = Literal["auto", "none", "model", "group"]


class Placement(BaseModel):
    """The plan for one replica."""

    devices: dict[str, str] = Field(description="component -> device it lives on ('cpu' when offloaded)")
    offload: Literal["none", "model", "group"]
    execution_device: str = Field(description="device that runs the denoising loop")
    reason: str

    def input_device(self, component: str) -> str:
        """Where the inputs of ``component``'s own methods go (``vae.encode``, the upsampler, the
        audio VAE): its card when components are spread over cards, since accelerate's hook
        moves inputs only into ``forward``; the execution device when offloaded, where the
        offload hooks bring the weights."""
        return self.devices.get(component, self.execution_device) if self.offload == "none" else self.execution_device


def plan_placement(
    component_bytes: dict[str, int],
    device_free_bytes: dict[str, int],
    *,
    offload: OffloadMode = "auto",
    activation_headroom: float = 0.2,
) -> Placement:
    """Place components on devices, or choose an offload mode when they do not fit.

    ``activation_headroom`` is the fraction of each device kept free for activations (the
    attention over thousands of video tokens needs several GiB at 768x512x121).
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
    room = dict(capacity)
    devices: dict[str, str] = {}
    for name, size in sorted(component_bytes.items(), key=lambda kv: kv[1], reverse=True):
        target = max(room, key=room.get)
        if size > room[target]:
            largest = max(component_bytes.values())
            if offload == "none":
                raise PlacementError(
                    f"component {name!r} needs {size / GiB:.1f} GiB but the most room left on any device is "
                    f"{room[target] / GiB:.1f} GiB (after keeping {activation_headroom:.0%} for activations); "
                    "use more --gpus-per-replica, a smaller --dtype, or --offload model / group"
                )
            # Whole components fit one card in turn: model offload. Not even that: group offload.
            mode = "model" if largest <= max(capacity.values()) else "group"
            return plan_placement(component_bytes, device_free_bytes, offload=mode, activation_headroom=activation_headroom)
        devices[name] = target
        room[target] -= size
    biggest = max(component_bytes, key=component_bytes.get)
    used = sorted(set(devices.values()))
    return Placement(
        devices=devices,
        offload="none",
        execution_device=devices[biggest],
        reason=f"all components fit on {', '.join(used)}",
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
