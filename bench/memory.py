"""Memory of one worker: over many consecutive jobs (does it creep?), and for one large clip.

    python bench/memory.py --jobs 50 --json --save
    python bench/memory.py --size 1920x1088x241 --json --save   # one job of that size

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

With ``--size WxHxF`` the worker instead runs ``--jobs`` (default 1) t2v jobs of that size,
``--steps`` denoising steps each (default 1: the memory of a step does not depend on how many
run). ``peak_rss_over_frames`` = (the worker's peak RSS - its RSS after loading the model) /
the job's uint8 frame bytes; the target is <= 1.5. ``phase_peak_over_frames`` says where the
peak is (prompt encoding, denoising, video decode, audio decode, mux), measured the same way,
and ``generation`` what the sidecar says of the decode (``vae_tiling``). On the CPU the
VAE's activations are host memory too; on a GPU they are device memory and only uint8 frames
reach the host.
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
    p.add_argument("--jobs", type=int, default=None, help="jobs to run (default 50; with --size, 1)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--model", default="tiny")
    p.add_argument("--chain-segments", type=int, default=4)
    p.add_argument("--chain-size", default="1280x704x241", help="WxHxF of one segment of the chain")
    p.add_argument("--size", help="WxHxF: measure --jobs (default 1) jobs of this size instead of the mixed cycle")
    p.add_argument("--steps", type=int, default=1, help="denoising steps of each --size job")
    args = p.parse_args(argv)
    if args.size:
        return emit("memory", size_memory(args), args)

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
    jobs = validate_rows([(str(tmp / "m.parquet"), make_rows(args.jobs or 50, images))], model.profile).jobs
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


class PeakSampler:
    """The process's peak RSS, sampled every 5 ms on a thread, per named phase."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.phase = "other"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.note()

    def note(self) -> None:
        rss = self.process.memory_info().rss
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def wrap(self, owner, name: str, phase: str) -> None:
        """Count the time inside ``owner.name`` as ``phase`` (instrumentation: the call is unchanged)."""
        inner = getattr(owner, name)

        def timed(*a, **k):
            outer, self.phase = self.phase, phase
            try:
                return inner(*a, **k)
            finally:
                self.note()
                self.phase = outer

        setattr(owner, name, timed)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.note()


def size_memory(args) -> dict:
    """``--size``: the peak host memory of jobs of one size over their uint8 frames."""
    import json

    import torch

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.weights import resolve_model
    from ltx_ray.job import runner as runner_module
    from ltx_ray.job.runner import JobRunner
    from ltx_ray.storage.manifest import validate_rows
    from ltx_ray.storage.store import OutputStore

    width, height, frames = (int(x) for x in args.size.split("x"))
    jobs_n = args.jobs or 1
    tmp = Path(tempfile.mkdtemp(prefix="ltx-ray-memory-"))
    rows = [{"job_id": f"size-{i}", "prompt": f"a product turning on a table, take {i}", "width": width,
             "height": height, "num_frames": frames, "steps": args.steps} for i in range(jobs_n)]
    model = resolve_model(args.model)
    jobs = validate_rows([(str(tmp / "m.parquet"), rows)], model.profile).jobs
    engine = LTX2Engine(model.path, device=args.device, dtype=args.dtype, profile=model.profile)
    runner = JobRunner(engine, OutputStore(str(tmp / "out")), model, device=args.device, dtype=args.dtype, run_id="memory")
    torch.set_grad_enabled(False)
    sampler = PeakSampler()
    after_load = sampler.process.memory_info().rss
    for owner, name, phase in ((engine.prompt_cache, "encode", "encode_prompt"), (engine.stages, "run", "denoise"),
                               (engine.decoders, "video", "decode_video"), (engine.decoders, "audio", "decode_audio"),
                               (runner_module, "write_mp4", "mux")):
        sampler.wrap(owner, name, phase)
    results = []
    with sampler:
        for job in jobs:
            results.append(runner.run(job))
    frame_bytes = width * height * frames * 3
    peak = max(sampler.peaks.values())
    sidecars = [json.loads(fsspec_read(r.sidecar_uri)) for r in results if r.status == "succeeded"]
    return {
        "size": args.size, "jobs": len(jobs), "steps": args.steps, "device": args.device,
        "failed": [f"{r.job_id}: {r.error}" for r in results if r.status != "succeeded"],
        "frame_mb": round(frame_bytes / 2**20, 1),
        "rss_mb_after_model": round(after_load / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_rss_over_frames": round((peak - after_load) / frame_bytes, 3),
        "phase_peak_over_frames": {k: round((v - after_load) / frame_bytes, 3) for k, v in sampler.peaks.items()},
        "vae_tiling": [sc["generation"].get("vae_tiling") for sc in sidecars],
        "timings": [r.timings for r in results],
    }


def fsspec_read(uri: str) -> bytes:
    import fsspec

    with fsspec.open(uri, "rb") as fh:
        return fh.read()


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
