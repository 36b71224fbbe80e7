"""Memory of one worker over many consecutive jobs: does it creep?

    python bench/memory.py --jobs 50 --json --save

One engine and one ``JobRunner`` - exactly what a generation actor holds - run ``--jobs``
jobs that cycle through ten mixed jobs (t2v, i2v, keyframes; several sizes, with and without
audio) on the tiny model, writing real outputs. A sampling thread records the process RSS
peak of every job (and ``torch.cuda.max_memory_allocated`` on CUDA). ``growth`` = the peak of
the last ten jobs / the peak of the first ten (same mix of jobs in both windows); flat is
<= 1.05.

Then a long video: ``--chain-segments`` segments of ``--chain-size`` WxHxF joined by
``engine.segments.generate_long`` from a fake segment generator (random frames: this measures
the join, not the model), beside the join that concatenated per segment (what ltx-ray did
before), each under ``tracemalloc``. ``chain_peak_over_final`` = (peak - one segment) / the
final uint8 video; the target is <= 1.5.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser  # noqa: E402

# Ten jobs, cycled: every window of ten consecutive jobs holds the same mix.
CYCLE = [
    {"task": "t2v", "width": 256, "height": 160, "num_frames": 17},
    {"task": "i2v", "width": 320, "height": 192, "num_frames": 25},
    {"task": "keyframes", "width": 256, "height": 160, "num_frames": 25},
    {"task": "t2v", "width": 384, "height": 256, "num_frames": 9, "audio": False},
    {"task": "i2v", "width": 256, "height": 256, "num_frames": 17},
    {"task": "t2v", "width": 448, "height": 256, "num_frames": 33},
    {"task": "keyframes", "width": 320, "height": 192, "num_frames": 17, "audio": False},
    {"task": "i2v", "width": 192, "height": 320, "num_frames": 17},
    {"task": "t2v", "width": 256, "height": 160, "num_frames": 41},
    {"task": "keyframes", "width": 384, "height": 256, "num_frames": 25},
]


def make_rows(n: int, images: list[str]) -> list[dict]:
    rows = []
    for i in range(n):
        spec = dict(CYCLE[i % len(CYCLE)])
        task = spec.pop("task")
        row = {"job_id": f"mem-{i:03d}-{task}", "prompt": f"a product on a table, take {i}", **spec}
        if task == "i2v":
            row["image_uri"] = images[i % 2]
        elif task == "keyframes":
            row["keyframes"] = [{"uri": images[0], "frame": 0, "strength": 1.0},
                                {"uri": images[1], "frame": spec["num_frames"] - 1, "strength": 0.8}]
        rows.append(row)
    return rows


def draw(path: Path, color) -> str:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 240), (235, 235, 230))
    ImageDraw.Draw(img).ellipse([96, 72, 224, 192], fill=color)
    img.save(path)
    return str(path)


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--model", default="tiny")
    p.add_argument("--chain-segments", type=int, default=4)
    p.add_argument("--chain-size", default="1280x704x241", help="WxHxF of one segment of the chain")
    args = p.parse_args(argv)

    import psutil
    import torch

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.weights import resolve_model
    from ltx_ray.job.runner import JobRunner
    from ltx_ray.storage.manifest import validate_rows
    from ltx_ray.storage.store import OutputStore

    tmp = Path(tempfile.mkdtemp(prefix="ltx-ray-memory-"))
    images = [draw(tmp / "red.png", (200, 30, 40)), draw(tmp / "green.png", (30, 160, 60))]
    model = resolve_model(args.model)
    jobs = validate_rows([(str(tmp / "m.parquet"), make_rows(args.jobs, images))], model.profile).jobs
    me = psutil.Process()
    rss_before_load = me.memory_info().rss / 2**20
    engine = LTX2Engine(model.path, device=args.device, dtype=args.dtype, profile=model.profile)
    runner = JobRunner(engine, OutputStore(str(tmp / "out")), model, device=args.device, dtype=args.dtype, run_id="memory")
    rss_after_load = me.memory_info().rss / 2**20
    cuda = args.device.startswith("cuda")

    peaks: list[float] = []
    cuda_peaks: list[float] = []
    failed = []
    for job in jobs:
        peak = [me.memory_info().rss]
        stop = threading.Event()

        def sample(peak=peak, stop=stop) -> None:
            while not stop.wait(0.005):
                peak[0] = max(peak[0], me.memory_info().rss)

        thread = threading.Thread(target=sample, daemon=True)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        thread.start()
        row = runner.run(job)
        stop.set()
        thread.join()
        peak[0] = max(peak[0], me.memory_info().rss)
        peaks.append(peak[0] / 2**20)
        if cuda:
            cuda_peaks.append(torch.cuda.max_memory_allocated() / 2**20)
        if row.status != "succeeded":
            failed.append(f"{row.job_id}: {row.error}")

    window = min(10, len(peaks))
    result = {
        "jobs": len(jobs),
        "device": args.device,
        "failed": failed,
        "rss_mb_before_model": round(rss_before_load, 1),
        "rss_mb_after_model": round(rss_after_load, 1),
        "peak_rss_mb_first10": round(max(peaks[:window]), 1),
        "peak_rss_mb_last10": round(max(peaks[-window:]), 1),
        "growth": round(max(peaks[-window:]) / max(peaks[:window]), 4),
        "rss_mb_after_jobs": round(me.memory_info().rss / 2**20, 1),
        "peak_rss_mb_per_job": [round(x, 1) for x in peaks],
    }
    result.update(chain_memory(args.chain_size, args.chain_segments))
    if cuda:
        result.update(
            cuda_peak_mb_first10=round(max(cuda_peaks[:window]), 1),
            cuda_peak_mb_last10=round(max(cuda_peaks[-window:]), 1),
            cuda_growth=round(max(cuda_peaks[-window:]) / max(cuda_peaks[:window]), 4),
        )
    return emit("memory", result, args)


def chain_memory(size: str, segments: int) -> dict:
    """Peak traced memory of joining ``segments`` fake segments, now and as concatenation did."""
    import tracemalloc

    import numpy as np

    from ltx_ray.engine.segments import generate_long, plan_segments
    from ltx_ray.engine.types import Clip, JobInputs
    from ltx_ray.schema.fields import SEGMENT_OVERLAP_FRAMES
    from ltx_ray.schema.manifest import ManifestRow
    from ltx_ray.schema.profiles import ModelProfile

    width, height, length = (int(x) for x in size.split("x"))
    total = length + (segments - 1) * (length - SEGMENT_OVERLAP_FRAMES)
    job = ManifestRow(job_id="chain", prompt="p", width=width, height=height, num_frames=total,
                      segment_frames=length, audio=False).resolve(ModelProfile())
    assert len(plan_segments(job.num_frames, job.segment_frames)) == segments

    def fake_segment(seg_job, _inputs, _on_step):  # a fake of LTX2Engine.generate_segment: frames only
        shape = (seg_job.num_frames, seg_job.height, seg_job.width, 3)
        frames = np.random.default_rng(seg_job.seed).integers(0, 255, shape, np.uint8)
        return Clip(frames=frames, fps=job.fps, audio=None, sample_rate=None)

    def concatenated():  # the join before: np.concatenate after every segment
        frames = None
        for k, (_, n) in enumerate(plan_segments(job.num_frames, job.segment_frames)):
            clip = fake_segment(job.model_copy(update={"num_frames": n, "seed": k}), None, None)
            frames = clip.frames if frames is None else np.concatenate([frames, clip.frames[SEGMENT_OVERLAP_FRAMES:]])
        return frames[: job.num_frames]

    peaks = {}
    for name, join in (("chain", lambda: generate_long(fake_segment, job, JobInputs(), 48000).frames),
                       ("chain_concatenated", concatenated)):
        tracemalloc.start()
        frames = join()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        final, segment = frames.nbytes, length * height * width * 3
        del frames
    return {
        "chain_segments": segments, "chain_frames": total, "chain_final_mb": round(final / 2**20, 1),
        "chain_segment_mb": round(segment / 2**20, 1), "chain_peak_mb": round(peaks["chain"] / 2**20, 1),
        "chain_peak_over_final": round((peaks["chain"] - segment) / final, 3),
        "chain_concatenated_peak_mb": round(peaks["chain_concatenated"] / 2**20, 1),
        "chain_concatenated_peak_over_final": round((peaks["chain_concatenated"] - segment) / final, 3),
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
