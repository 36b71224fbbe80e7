"""The installation checks, in the order of dependence: packages against the lock, then the
native libraries they load (torch, torchaudio, PyAV), then what is built on them."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ltx_ray.doctor.report import Check, one_line

LOCK_NAME = "requirements.lock"
INSTALL_FIX = 'pip install -c requirements.lock -e ".[dev]" (from the repository root, in the venv)'
# The modules a batch worker and a Serve replica import: the generation path, the engine
# (torch + diffusers), storage and the HTTP layer. Importing the CLI alone proves none of them.
WORKER_MODULES = ("ltx_ray.job.build", "ltx_ray.job.runner", "ltx_ray.engine.ltx2", "ltx_ray.engine.stages",
                  "ltx_ray.storage.store", "ltx_ray.replica.group", "ltx_ray.batch.stage", "ltx_ray.serve.app")
LTX2_PIPELINES = ("LTX2Pipeline", "LTX2ImageToVideoPipeline", "LTX2ConditionPipeline", "LTX2InContextPipeline",
                  "LTX2LatentUpsamplePipeline")




def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):
        return Check(name="python", ok=False, detail=f"{version} at {sys.executable}",
                     fix="use Python 3.11 or 3.12 (the lock is resolved for 3.11+; CI runs 3.11, the image 3.12)")
    return Check(name="python", ok=True, detail=f"{version} at {sys.executable}")


def find_lock(explicit: str | None = None) -> Path | None:
    """--lock, then $LTX_RAY_LOCK, then the lock beside the package's source (an editable install)."""
    for candidate in (explicit, os.environ.get("LTX_RAY_LOCK")):
        if candidate:
            return Path(candidate)
    beside = Path(importlib.import_module("ltx_ray").__file__).resolve().parent.parent / LOCK_NAME
    return beside if beside.exists() else None


def read_lock(path: Path) -> dict[str, Requirement]:
    """The lock's pins that apply to this interpreter and platform, by canonical name."""
    env = default_environment()
    env["extra"] = ""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            pins[canonicalize_name(req.name)] = req
    return pins


def runtime_closure() -> set[str]:
    """ltx-ray's own requirements (no extras) and theirs, as installed: what a worker needs."""
    env = default_environment()
    seen: set[str] = set()
    todo = ["ltx-ray"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    seen.discard("ltx-ray")
    return seen


def check_packages(lock: str | None) -> Check:
    try:
        metadata.version("ltx-ray")
    except metadata.PackageNotFoundError:
        return Check(name="packages", ok=False, detail="ltx-ray itself is not installed in this interpreter",
                     fix=INSTALL_FIX)
    path = find_lock(lock)
    if path is not None and not path.exists():
        return Check(name="packages", ok=False, detail=f"lock file {path} does not exist",
                     fix="pass --lock PATH to the repository's requirements.lock, or unset LTX_RAY_LOCK")
    if path is None:
        # Installed as a library, without the repository: check ltx-ray's declared ranges instead.
        pins = {canonicalize_name(r.name): r for r in map(Requirement, metadata.requires("ltx-ray") or [])
                if r.marker is None}
        source = "ltx-ray's declared ranges (no requirements.lock found; pass --lock to check exact pins)"
    else:
        pins = read_lock(path)
        source = str(path)
    needed = runtime_closure()
    wrong, missing, optional_missing = [], [], 0
    for name, req in sorted(pins.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in needed or path is None:
                missing.append(f"{name} (want {req.specifier})")
            else:
                optional_missing += 1  # in the lock for the dev extra only
            continue
        if not req.specifier.contains(have, prereleases=True):
            wrong.append(f"{name} {have} (want {req.specifier})")
    if wrong or missing:
        problems = [f"{len(wrong)} differ from {source}: {', '.join(wrong[:8])}" if wrong else "",
                    f"{len(missing)} missing: {', '.join(missing[:8])}" if missing else ""]
        return Check(name="packages", ok=False, detail="; ".join(p for p in problems if p), fix=INSTALL_FIX)
    extra = f"; {optional_missing} dev-only pins not installed" if optional_missing else ""
    return Check(name="packages", ok=True, detail=f"{len(pins)} pins match {source}{extra}")


# -- native libraries and what is built on them -----------------------------------------


def check_torch() -> Check:
    try:
        import torch

        value = (torch.ones(2) * 2).sum().item()
    except Exception as exc:  # noqa: BLE001
        return Check(name="torch", ok=False, detail=one_line(exc), fix=INSTALL_FIX)
    return Check(name="torch", ok=value == 4.0, detail=f"{torch.__version__} (CUDA build {torch.version.cuda})",
                 fix="" if value == 4.0 else "torch computes wrong results; reinstall it: " + INSTALL_FIX)


def check_torchaudio() -> Check:
    """torchaudio's native library is loaded by ``torchaudio._extension``: a torchaudio built for
    another torch fails right there (undefined symbol), and diffusers' LTX2 import fails with it."""
    try:
        import torch
        import torchaudio
        import torchaudio._extension  # noqa: F401 - loads libtorchaudio
        import torchaudio.functional as AF

        AF.resample(torch.zeros(1, 160), 16000, 24000)
    except Exception as exc:  # noqa: BLE001
        return Check(name="torchaudio", ok=False, detail=one_line(exc),
                     fix="torchaudio must match torch exactly (2.11.0 with torch 2.11.0): " + INSTALL_FIX)
    return Check(name="torchaudio", ok=True, detail=f"{torchaudio.__version__}, native library loads")


def check_torchvision() -> Check:
    """torchvision's operators are registered by its native library: one built for another torch
    imports, then fails at its first operator ('operator torchvision::nms does not exist'), which
    LTX-2.5's prompt enhancer (Gemma4Processor) reaches."""
    try:
        import torch
        import torchvision
        from torchvision.ops import nms

        nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
    except Exception as exc:  # noqa: BLE001
        return Check(name="torchvision", ok=False, detail=one_line(exc),
                     fix="torchvision must be the release built for your torch (0.26.0 with torch 2.11.0): " + INSTALL_FIX)
    return Check(name="torchvision", ok=True, detail=f"{torchvision.__version__}, native operators load")


def check_diffusers_ltx2() -> Check:
    try:
        import diffusers

        missing = [name for name in LTX2_PIPELINES if getattr(diffusers, name, None) is None]
    except Exception as exc:  # noqa: BLE001
        return Check(name="diffusers LTX2", ok=False, detail=one_line(exc), fix=INSTALL_FIX)
    if missing:
        return Check(name="diffusers LTX2", ok=False, detail=f"diffusers {diffusers.__version__} lacks {missing}",
                     fix="ltx-ray needs diffusers 0.42.1: " + INSTALL_FIX)
    return Check(name="diffusers LTX2", ok=True, detail=f"diffusers {diffusers.__version__}: {len(LTX2_PIPELINES)} pipelines import")


def check_worker_modules() -> Check:
    for name in WORKER_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            return Check(name="worker modules", ok=False, detail=f"import {name}: {one_line(exc)}", fix=INSTALL_FIX)
    return Check(name="worker modules", ok=True, detail=f"{len(WORKER_MODULES)} import: {', '.join(WORKER_MODULES)}")


def check_pyav() -> Check:
    """Encode a short clip through ltx-ray's own muxer (libx264 + aac) and read it back."""
    try:
        import av
        import numpy as np

        from ltx_ray.storage.mux import probe, write_mp4

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "doctor.mp4"
            frames = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
            write_mp4(path, frames, 24.0, np.zeros((2, 9000), np.float32), 24000)
            seen = probe(path)
    except Exception as exc:  # noqa: BLE001
        return Check(name="pyav encoders", ok=False, detail=one_line(exc),
                     fix="PyAV's wheels ship libx264 and aac; a source build without them needs reinstalling: "
                         + INSTALL_FIX)
    ok = seen.video_codec == "h264" and seen.audio_codec == "aac"
    return Check(name="pyav encoders", ok=ok, detail=f"av {av.__version__}: wrote {seen.video_codec} + {seen.audio_codec}",
                 fix="" if ok else "PyAV lacks libx264 or aac: " + INSTALL_FIX)


def check_cuda() -> Check:
    try:
        import torch

        if not torch.cuda.is_available():
            return Check(name="cuda", ok=True, detail=f"no GPU: CPU only (torch CUDA build {torch.version.cuda})")
        devices = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            torch.ones(1, device=f"cuda:{i}").add_(1)  # a device that lists but cannot run fails here
            bf16 = torch.cuda.get_device_capability(i) >= (8, 0)
            devices.append(f"cuda:{i} {props.name} {props.total_memory / 2**30:.0f} GiB bf16={'yes' if bf16 else 'no'}")
    except Exception as exc:  # noqa: BLE001
        return Check(name="cuda", ok=False, detail=one_line(exc),
                     fix="the torch wheel is the CUDA 13.0 build: the host driver must be >= 580 (nvidia-smi)")
    return Check(name="cuda", ok=True, detail="; ".join(devices))


# -- optional targets ---------------------------------------------------------------------

