"""The process group of one replica's ranks (issue 18): join it, leave it.

A replica of several ranks (``ltx_ray.replica.group``) is one ``torch.distributed`` default
process group: nccl on GPUs, gloo on the CPU (``--device cpu``, how the tests run it). Each
rank sees exactly one card, as ``cuda:0``. The ``timeout`` bounds every collective: a rank
that hangs in one (its peer died mid-clip) raises instead of holding the replica forever,
and the replica is rebuilt (``ltx_ray.errors.ReplicaFatal``).
"""

from __future__ import annotations

from datetime import timedelta


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def join(rank: int, world_size: int, address: str, port: int, device: str, timeout_s: float) -> None:
    """Join the group whose rank 0 listens on ``address:port``; returns when every rank has joined."""
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(0)  # the one card this rank sees (CUDA_VISIBLE_DEVICES, set by the group)
    dist.init_process_group(backend_for(device), init_method=f"tcp://{address}:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=timeout_s))


def leave() -> None:
    """Destroy the default group, if this process joined one (a rank that is given back)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
