"""One clip split over 1, 2 and 4 cards (issue 18): latency, speed-up and per-card efficiency, side by side.

    python bench/gpu_parallel.py --json                 # CUDA: ltx-2.0, 1080p two-stage and 4K on 1/2/4 cards where present
    python bench/gpu_parallel.py --device cpu --json    # the tiny model on 1 and 2 gloo ranks (tests/test_bench.py)

For each card count the machine has (1, 2, 4; ``--cards``), one process per card joins a
process group (nccl; gloo on a CPU), builds the model (real size with random weights,
``bench/gpu_models.py``; the same seed on every rank, so the ranks hold the same weights) and
runs each clip through ``LTX2Engine`` with the replica's layout (``--modes``: ulysses splits the
video tokens; cfg the guidance passes, which the distilled recipe has none of): a small warm-up
clip, then each clip once, timed on rank 0 between barriers. Denoising is split; the VAE decode
is not (every rank decodes: segments chain on decoded frames), so the speed-up is below the
denoising's. Per clip and card count: ``s_per_clip``, ``speedup`` (1 card's seconds over N
cards'), ``efficiency`` (speed-up / N) and ``peak_gpu_gib`` on rank 0. Sequence parallel is a
latency tool, not a memory tool: every card holds the whole model.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser  # noqa: E402

# (label, width, height, frames, two_stage): what one card takes minutes over.
CLIPS = {
    "cuda": [("1080p two-stage", 1920, 1088, 121, True), ("4K", 3840, 2176, 121, False)],
    "cpu": [("256x160x17", 256, 160, 17, False), ("256x192x9 two-stage", 256, 192, 9, True)],
}
WARM_UP = (256, 160, 9)


def arguments(argv):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", help="cuda (default where present) or cpu")
    p.add_argument("--model", help="ltx-2.0, ltx-2.3, ltx-2.5 (real size, random weights) or tiny; "
                   "default ltx-2.0 on CUDA, tiny on a CPU")
    p.add_argument("--cards", help="comma list of rank counts (default: 1, 2, 4 as far as the machine has cards; 1,2 on a CPU)")
    p.add_argument("--modes", default="ulysses", help="comma list of parallel modes measured on 2 cards or more")
    p.add_argument("--steps", type=int, help="denoising steps of each clip (default: the profile's)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = arguments(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = args.model or ("ltx-2.0" if device == "cuda" else "tiny")
    available = torch.cuda.device_count() if device == "cuda" else 2
    cards = [int(n) for n in args.cards.split(",")] if args.cards else [n for n in (1, 2, 4) if n <= available]
    modes = args.modes.split(",")
    runs = [(1, "none")] + [(n, mode) for n in cards if n > 1 for mode in modes]
    result: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "model": model,
                    "cards_present": available, "clips": {}, "not_run": []}
    for n, mode in runs:
        if n > available:
            result["not_run"].append(f"{mode} on {n} cards: the machine has {available}")
            continue
        started = time.perf_counter()
        timings = _launch(n, mode, device, model, args.steps)
        for label, measured in timings.items():
            row = result["clips"].setdefault(label, {})
            row[f"{n}:{mode}"] = measured
        print(f"bench/gpu_parallel: {mode} on {n} card(s) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for row in result["clips"].values():
        one = row.get("1:none", {}).get("s_per_clip")
        for key, measured in row.items():
            n = int(key.split(":")[0])
            if one and measured.get("s_per_clip"):
                measured["speedup"] = round(one / measured["s_per_clip"], 3)
                measured["efficiency"] = round(measured["speedup"] / n, 3)
    return emit("gpu_parallel", result, args)


def _launch(world: int, mode: str, device: str, model: str, steps: int | None) -> dict:
    """``world`` processes (spawned: CUDA must start in each), rank 0's timings back through a file."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        out = Path(tmp) / "rank0.json"
        mp.start_processes(_rank, args=(world, mode, device, model, steps, f"{tmp}/store", str(out)), nprocs=world,
                           join=True, start_method="spawn" if device == "cuda" else "fork")
        return json.loads(out.read_text())


def _rank(rank: int, world: int, mode: str, device: str, model: str, steps: int | None, store: str, out: str) -> None:
    if device == "cuda":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)  # one card a rank, as a Ray actor of the group sees it
    import torch
    import torch.distributed as dist

    from bench.gpu_models import BenchModel
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow
    from ltx_ray.schema.parallel import Parallel
    from ltx_ray.schema.profiles import default_dtype

    if device == "cpu":
        torch.set_num_threads(1)  # ranks share the cores; 1 card's run gets the same one thread each
    if world > 1:
        dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"file://{store}",
                                rank=rank, world_size=world)
    bench = BenchModel(model, device=device, dtype=default_dtype(device), offload="none", shrink=False)
    engine = bench.engine("distilled", {"parallel": Parallel(mode=mode, ranks=world)} if world > 1 else {})
    profile = bench.profile("distilled")

    def clip(width: int, height: int, frames: int, two_stage: bool, seed: int):
        row = ManifestRow(job_id=f"clip-{seed}", prompt="a red sneaker turning slowly on a white table", seed=seed,
                          width=width, height=height, num_frames=frames, two_stage=two_stage, guidance_scale=1.0,
                          steps=steps)
        return row.resolve(profile)

    def timed(job) -> float:
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        engine.generate(job, JobInputs())
        if device == "cuda":
            torch.cuda.synchronize()
        if world > 1:
            dist.barrier()
        return time.perf_counter() - start

    timed(clip(*WARM_UP, False, 0))  # kernels chosen, buffers made: not what a clip costs in a long run
    timings = {}
    for index, (label, width, height, frames, two_stage) in enumerate(CLIPS[device]):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(clip(width, height, frames, two_stage, index + 1))
        timings[label] = {"s_per_clip": round(seconds, 2)}
        if device == "cuda":
            timings[label]["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    if rank == 0:
        Path(out).write_text(json.dumps(timings))
    if world > 1:
        dist.destroy_process_group()
    bench.close()


if __name__ == "__main__":
    main()
