"""LTX-2 end to end on one GPU: real-size 2.0 and 2.5 with random weights, through LTX2Engine and JobRunner.

    python bench/gpu.py --json --save                  # every configuration (CUDA: ltx-2.0, ltx-2.5)
    python bench/gpu.py --budget-s 480 --json          # what fits in 8 minutes, load included
    python bench/gpu.py --device cpu --json            # the same code on the tiny model (CI: tests/test_gpu.py)

On a bare GPU box (Python 3.12, torch, transformers, accelerate, peft, safetensors, pyarrow,
fsspec; no diffusers, ray, av or pydantic; no network; 64 MiB for extra files) this runs in
process, without Ray. ``bash bench/gpu_wheels.sh`` downloads here the 17 wheels that needs
into ``.whl/`` (50.4 MiB for Python 3.12, checked <= 64 MiB; git-ignored, so carry it with the
repository). Then one command of at most 10 minutes, from the repository root:

    python -m pip install -q --no-deps --no-index --target /tmp/ltx-deps .whl/*.whl && \
    PYTHONPATH=/tmp/ltx-deps:. python bench/gpu.py --budget-s 480 --json --partial $OUT/gpu.json \
        >$OUT/gpu.stdout 2>$OUT/gpu.log

(no pip there: ``python -c "import sys,zipfile;[zipfile.ZipFile(w).extractall(sys.argv[1]) for w in
sys.argv[2:]]" /tmp/ltx-deps .whl/*.whl`` installs the same files). ``--partial`` is rewritten
after every configuration, so a run cut short still leaves the ones it finished; the clips go
to a temporary folder, not to ``$OUT``.

What runs: each model's components are built from its real configs directly on the GPU in bf16
(``ltx_ray/engine/real_size.py``: nothing downloaded, nothing but the 1 GB upsampler written)
and handed to ``LTX2Engine(pipeline=...)``; each clip is a manifest row resolved with the model's
profile and run by ``JobRunner.run`` (prompt encoding, denoising in one or two stages, VAE and
audio decoding, H.264 + AAC mux, thumbnail, sidecar, results row), as a batch run makes it.
Configurations, most important first (``gpu_configs.plan``), stopping to start new ones when
``--budget-s`` would be exceeded (those are listed as ``not_run``):
  1. distilled 768x512x121, eager, native attention;
  2. each lever beside it (attention kernels, compile, fp8: one not in the engine yet is skipped, saying so);
  3. distilled 1920x1088x121 two-stage (preset pro: 960x544, x2 upsampler, 3 refinement steps);
  4. 768x512x121 at queue depth (N jobs, two in flight on one JobRunner), then with a per-row LoRA;
  5. the other models' 768x512x121 and 1080p; then 1080p at queue depth and the guided recipe.
Per configuration (per clip): ``s_per_clip``, ``clips_per_gpu_hour``, ``stage_seconds`` (text
encode, denoise per stage, upsample, VAE decode, audio decode, gc, mux, other), ``s_per_step``,
``mfu`` (FLOPs of every transformer call, counted per call shape with ``torch.utils.flop_counter``,
over the denoise seconds, against the card's dense bf16 peak), passes per step as run (a guided
step: CFG batch 2 + STG + modality = 4), ``peak_gpu_gib``, ``peak_host_gib``. Logs go to stderr;
the JSON is the last stdout line.
"""

from __future__ import annotations

import fnmatch
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser  # noqa: E402

# Seconds kept at the end of a --budget-s run for freeing the model and writing the result; and
# the factor on every estimate (they scale one measured clip).
BUDGET_RESERVE_S = {"cuda": 20.0, "cpu": 2.0}
ESTIMATE_MARGIN = 1.2


def log(message: str) -> None:
    print(f"bench/gpu: {message}", file=sys.stderr, flush=True)


def arguments(argv):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", help="cuda (default where present) or cpu")
    p.add_argument("--models", help="comma list, first is the one levers run on: ltx-2.0, ltx-2.3, ltx-2.5 (real size, "
                   "random weights), tiny, or a model folder; default ltx-2.0,ltx-2.5 on CUDA, tiny on a CPU")
    p.add_argument("--dtype", help="default bfloat16 on CUDA, float32 on a CPU")
    p.add_argument("--offload", default="auto", help="as a run's --offload (auto: resident where the card holds it)")
    p.add_argument("--small", action="store_true", help="small clip sizes (the default on a CPU)")
    p.add_argument("--shrink", action="store_true", help="real-size code at the twins' widths (a CPU check of that path)")
    p.add_argument("--clips", type=int, help="clips measured per configuration after its warm-up (default 2; 1 with --budget-s)")
    p.add_argument("--queue-jobs", type=int, default=4, help="jobs of the 768x512x121 queue-depth configuration")
    p.add_argument("--configs", help="comma list of names or patterns ('*lora*'): run only these configurations")
    p.add_argument("--budget-s", type=float, help="start no configuration that would end after this many seconds")
    p.add_argument("--out", help="folder for the clips (default a new temporary folder)")
    p.add_argument("--partial", help="rewrite the result JSON here after every configuration")
    p.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak for MFU (default: by device name)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = arguments(argv)

    import torch

    from bench.gpu_configs import GEOMETRIES, plan
    from bench.gpu_report import Estimates, peak_tflops
    from ltx_ray.schema.profiles import default_dtype

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device_type = torch.device(device).type
    models = args.models.split(",") if args.models else (["ltx-2.0", "ltx-2.5"] if device_type == "cuda" else ["tiny"])
    scale = "small" if args.small or args.shrink or device_type != "cuda" else "full"
    configs = plan(models, scale, args.clips or (1 if args.budget_s else 2), args.queue_jobs)
    if args.configs:
        wanted = args.configs.split(",")
        configs = [c for c in configs if any(fnmatch.fnmatchcase(c.name, w) for w in wanted)]
    name = torch.cuda.get_device_name(torch.device(device)) if device_type == "cuda" else None
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "device": name or device, "dtype": args.dtype or default_dtype(device), "offload": args.offload,
        "peak_bf16_tflops": args.peak_tflops or peak_tflops(name), "budget_s": args.budget_s, "scale": scale,
        "sizes": {k: g.label for k, g in GEOMETRIES[scale].items()}, "out": str(out), "models": {}, "configs": {},
    }
    session = Session(args, device, result, out, Estimates(device_type),
                      deadline=started + args.budget_s - BUDGET_RESERVE_S[device_type] if args.budget_s else None)
    try:
        for index, config in enumerate(configs):
            session.run(index, config, scale)
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            session.write_partial()
    finally:
        session.close()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return emit("gpu", result, args)


class Session:
    """The configurations of one benchmark run, on one model at a time."""

    def __init__(self, args, device: str, result: dict, out: Path, estimates, deadline: float | None):
        self.args, self.device, self.result, self.out, self.estimates, self.deadline = (
            args, device, result, out, estimates, deadline)
        self.model = None
        self.unloadable: dict[str, str] = {}  # model -> why it did not build (not tried again)

    def run(self, index: int, config, scale: str) -> None:
        from bench.gpu_configs import lever_problem
        from bench.gpu_report import not_measured

        problem = lever_problem(config.lever, self.device) if config.lever else None
        if problem:
            self._record(not_measured(config, "skipped", problem), None)
            return
        if config.model in self.unloadable:
            self._record(not_measured(config, "not_run", f"{config.model} did not load: {self.unloadable[config.model]}"), None)
            return
        late = self._over_budget(config, scale)
        if late:
            self._record(not_measured(config, "not_run", late), None)
            return
        job = None
        try:
            self._load(config.model)
            rebuilt = self.model.ensure_clean()
            if rebuilt:
                self.result["models"][config.model]["transformer_rebuilds_s"].append(round(rebuilt, 1))
            from bench.gpu_run import measure

            outcome, job = measure(self.model, config, index, scale, self.out, self.deadline,
                                   self.result["peak_bf16_tflops"])
        except Exception as exc:  # noqa: BLE001 - one configuration failing (out of memory, a kernel) is a result
            log(f"{config.name}: failed\n{traceback.format_exc()}")
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            outcome = not_measured(config, "failed", f"{type(exc).__name__}: {first}")
        finally:
            if self.model is not None:
                self.model.after(config)
        if self.model is None:
            from bench.gpu_models import free_device

            free_device(self.device)  # what a build that failed had allocated
        self._record(outcome, job)

    def _over_budget(self, config, scale: str) -> str | None:
        """Why ``config`` would not finish before the deadline, or None (also when nothing is measured yet)."""
        from bench.gpu_configs import WARMUP

        if self.deadline is None:
            return None
        left = self.deadline - time.perf_counter()
        if left <= 0:
            return "budget: no time left"
        model = self.model
        loading = model is None or model.name != config.model
        if model is None:
            return None  # nothing measured yet to estimate from: the first configuration runs
        warm = WARMUP[scale].model_copy(update={"two_stage": config.geometry.two_stage})
        plain = config.model_copy(update={"lora": False})  # the same work; no LoRA file written to estimate it
        estimate = self.estimates.config_s(config, config.model, model.job(plain, warm, 0, "estimate-warmup"),
                                           model.job(plain, config.geometry, 0, "estimate"), loading=loading)
        if estimate is not None and estimate * ESTIMATE_MARGIN > left:
            return f"budget: needs ~{estimate:.0f} s (x{ESTIMATE_MARGIN} margin), {left:.0f} s left"
        return None

    def _load(self, name: str) -> None:
        from bench.gpu_models import BenchModel

        if self.model is not None and self.model.name == name:
            return
        if self.model is not None:
            self.model.close()
            self.model = None
        log(f"building {name} on {self.device}")
        try:
            self.model = BenchModel(name, device=self.device, dtype=self.result["dtype"], offload=self.args.offload,
                                    shrink=self.args.shrink)
            start = time.perf_counter()
            self.model.engine("distilled", {})  # a folder model loads here
        except Exception as exc:
            self.unloadable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            self.close()
            raise
        load_s = self.model.load_s + time.perf_counter() - start
        self.estimates.load_s = max(self.estimates.load_s or 0.0, load_s)
        entry = self.result["models"].setdefault(name, {
            "params_b": self.model.params_b(), "random_weights": self.model.random_weights, "load_s": [],
            "transformer_rebuilds_s": []})
        entry["load_s"].append(round(load_s, 1))  # a model the plan comes back to is built again
        log(f"{name}: loaded in {load_s:.1f} s")

    def _record(self, outcome, job) -> None:
        baseline = self.result["configs"].get(outcome.baseline or "")
        if outcome.status == "ok" and baseline and baseline["status"] == "ok":
            outcome.speedup = round(baseline["s_per_clip"] / outcome.s_per_clip, 3)
        self.result["configs"][outcome.name] = outcome.model_dump()
        if outcome.status == "ok":
            self.estimates.measured(outcome.model, outcome, job, self.model.attention_tokens())
            log(f"{outcome.name}: {outcome.s_per_clip} s/clip, {outcome.clips_per_gpu_hour} clips/GPU-hour, "
                f"mfu {outcome.mfu}, stages {outcome.stage_seconds}")
        else:
            log(f"{outcome.name}: {outcome.status}: {outcome.reason}")

    def write_partial(self) -> None:
        if self.args.partial:
            import json

            Path(self.args.partial).write_text(json.dumps(self.result, indent=1) + "\n")

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


if __name__ == "__main__":
    main()
