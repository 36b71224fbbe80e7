"""How ``bench/gpu.py`` measures clips: per-stage seconds and transformer FLOPs from forward hooks on
the engine's components, peak GPU memory and peak host RSS, and clips run one or two in flight.

Nothing here changes what runs: the hooks only read the time (after a device synchronize, so a
stage's kernels are counted in it) and the shapes of the transformer's calls.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections import Counter
from pathlib import Path

# Stage 1 starts from pure noise (sigma 1, timestep 1000); a refinement from the first stage-2
# sigma (0.909375). A pipeline call whose first timestep is below this is stage 2.
STAGE_1_MIN_TIMESTEP = 990.0
STAGES = ("text_encode", "denoise_1", "upsample", "denoise_2", "vae_decode", "audio_decode", "gc", "mux", "other")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageClock:
    """Per-stage seconds, steps and transformer passes of the clips made through one pipeline.

    - text_encode: the text encoder (prompt cache misses) and the connectors of each stage;
    - denoise_1 / denoise_2: from a stage's first transformer call to its last, scheduler steps
      and guidance arithmetic between the calls included;
    - upsample: between the stages (the x2 upsampler and the refinement's set-up), connectors excepted;
    - vae_decode / audio_decode: the video decoder (every tile), the audio decoder and vocoder;
    - gc: Python's garbage collections (``LTX2Engine.free`` collects after every job).
    Transformer calls are counted by shape (batch, video / audio / text tokens, STG blocks, modality
    isolation), so ``passes`` is batch-1 passes as run and FLOPs come from one counted call per shape.
    """

    def __init__(self, pipe, device):
        self.device = device
        self.transformer = pipe.transformer
        self.paused = False
        self._handles = []
        self._watch(pipe.text_encoder, "text_encode")
        self._watch(pipe.connectors, "text_encode", on_start=self._new_pipeline_call)
        self._watch(pipe.vae.decoder, "vae_decode")
        self._watch(pipe.audio_vae.decoder, "audio_decode")
        self._watch(pipe.vocoder, "audio_decode")
        self._handles.append(self.transformer.register_forward_pre_hook(self._before_pass, with_kwargs=True))
        self._handles.append(self.transformer.register_forward_hook(self._after_pass))
        self._gc_start: float | None = None
        gc.callbacks.append(self._gc)
        self.reset()

    def reset(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.steps: Counter[str] = Counter()
        self.passes: Counter[str] = Counter()
        self.calls: Counter[tuple] = Counter()  # shape signature -> calls
        self.examples: dict[tuple, dict] = {}  # one call's inputs per signature, for counting its FLOPs
        self.per_token_timesteps = False
        self._stage = None
        self._last = self._stage_end = None
        self._timestep = None
        self._text_since_stage_end = 0.0

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    def _gc(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start is not None and not self.paused:
            self.seconds["gc"] += time.perf_counter() - self._gc_start
            self._gc_start = None

    def _now(self) -> float:
        _sync(self.device)
        return time.perf_counter()

    def _watch(self, module, stage: str, on_start=None) -> None:
        started: list[float] = []

        def before(_module, _args):
            if not self.paused:
                if on_start:
                    on_start()
                started.append(self._now())

        def after(_module, _args, _out):
            if not self.paused and started:
                spent = self._now() - started.pop()
                self.seconds[stage] += spent
                if stage == "text_encode":
                    self._text_since_stage_end += spent

        self._handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def _new_pipeline_call(self) -> None:
        self._stage = None  # the next transformer call opens a stage

    def _before_pass(self, _module, args, kwargs):
        if self.paused:
            return
        now = self._now()
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        timestep = kwargs["timestep"]
        self.per_token_timesteps |= timestep.ndim > 1
        t = float(timestep.max())
        if self._stage is None:
            self._stage = "denoise_1" if t >= STAGE_1_MIN_TIMESTEP else "denoise_2"
            if self._stage == "denoise_2" and self._stage_end is not None:
                self.seconds["upsample"] += now - self._stage_end - self._text_since_stage_end
            self._timestep = None
            self._last = now
        if t != self._timestep:
            self.steps[self._stage] += 1
            self._timestep = t
        batch = hidden.shape[0]
        self.passes[self._stage] += batch
        audio = kwargs.get("audio_hidden_states")
        text = kwargs.get("encoder_hidden_states")
        signature = (batch, hidden.shape[1], audio.shape[1] if audio is not None else 0,
                     text.shape[1] if text is not None else 0, bool(kwargs.get("isolate_modalities")),
                     tuple(kwargs.get("spatio_temporal_guidance_blocks") or ()))
        self.calls[signature] += 1
        self.examples.setdefault(signature, dict(kwargs))

    def _after_pass(self, _module, _args, _out):
        if self.paused or self._stage is None:
            return
        now = self._now()
        self.seconds[self._stage] += now - self._last
        self._last = self._stage_end = now
        self._text_since_stage_end = 0.0

    def flops(self, cache: dict[tuple, int]) -> int:
        """FLOPs of every transformer call since ``reset``: each new shape counted once on a real
        call (``torch.utils.flop_counter``, eager even where the blocks are compiled) into ``cache``."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        self.paused = True
        try:
            for signature, kwargs in self.examples.items():
                if signature in cache:
                    continue
                with torch.inference_mode(), _eager(), _countable_attention(self.device), \
                        FlopCounterMode(display=False) as counter:
                    self.transformer(**kwargs)
                cache[signature] = counter.get_total_flops()
        finally:
            self.paused = False
            self.examples = {}
        return sum(cache[s] * n for s, n in self.calls.items())


def _eager():
    import torch

    stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    if stance is None:
        from contextlib import nullcontext

        return nullcontext()
    return stance("force_eager")


def _countable_attention(device):
    """On a CPU, SDPA runs a fused kernel the FLOP counter has no formula for: count the math one."""
    from contextlib import nullcontext

    if device.type == "cuda":
        return nullcontext()  # flash / efficient / cuDNN SDPA have formulas
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


class Peaks:
    """Peak GPU memory (allocated) and peak host RSS since ``reset``."""

    def __init__(self, device):
        self.device = device
        self.host_scope = "since reset"

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:  # Linux: "5" resets the process's peak RSS (VmHWM) to its current RSS
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.host_scope = "process lifetime"

    def gpu_gib(self) -> float | None:
        import torch

        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)

    def host_gib(self) -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) * 1024 / 2**30, 3)
        except OSError:
            pass
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3)


def run_clips(runner, jobs: list, in_flight: int, deadline: float | None) -> tuple[list, float]:
    """Run ``jobs`` through ``runner`` with ``in_flight`` threads feeding it (the runner lets one job
    at a time generate, so the next one's generation overlaps this one's mux and upload). After
    ``deadline`` (perf_counter) no new job starts once one has. Returns (rows, wall seconds)."""
    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    rows: list = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if rows and deadline is not None and time.perf_counter() > deadline:
                    return
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            row = runner.run(job)
            with lock:
                rows.append(row)

    start = time.perf_counter()
    if in_flight == 1:
        worker()
    else:
        threads = [threading.Thread(target=worker, name=f"bench-gpu-{i}") for i in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return rows, time.perf_counter() - start
