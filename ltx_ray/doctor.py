"""``ltx-ray doctor``: the checks a person runs when something does not work.

Each check is a small function returning a :class:`Check` (OK or FAIL, what it saw and,
on FAIL, the fix). A check never raises: whatever goes wrong inside it is its finding.
The order is the order of dependence: packages, then the native libraries they load,
then what is built on them, then the optional targets (cluster, store, model).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

LOCK_NAME = "requirements.lock"
INSTALL_FIX = 'pip install -c requirements.lock -e ".[dev]" (from the repository root, in the venv)'
# The modules a batch worker and a Serve replica import: the generation path, the engine
# (torch + diffusers), storage and the HTTP layer. Importing the CLI alone proves none of them.
WORKER_MODULES = ("ltx_ray.generate", "ltx_ray.ltx2", "ltx_ray.ltx2_stages", "ltx_ray.storage", "ltx_ray.batch",
                  "ltx_ray.serve.app")
LTX2_PIPELINES = ("LTX2Pipeline", "LTX2ImageToVideoPipeline", "LTX2ConditionPipeline", "LTX2InContextPipeline",
                  "LTX2LatentUpsamplePipeline")
RAY_TIMEOUT_S = 20  # the bound for a dead address is 30 s for the whole check; leave room for the TCP probe


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    fix: str = ""


class DoctorReport(BaseModel):
    ok: bool
    checks: list[Check]


def run_doctor(*, lock: str | None = None, address: str | None = None, out: str | None = None,
               model: str | None = None) -> DoctorReport:
    """Every check that applies, in order; ``ok`` when all of them passed."""
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("packages", lambda: check_packages(lock)),
        ("torch", check_torch),
        ("torchaudio", check_torchaudio),
        ("diffusers LTX2", check_diffusers_ltx2),
        ("worker modules", check_worker_modules),
        ("pyav encoders", check_pyav),
        ("cuda", check_cuda),
    ]
    if address is not None:
        steps.append((f"ray {address}", lambda: check_ray(address)))
    if out is not None:
        steps.append((f"out {out}", lambda: check_store(out)))
    if model is not None:
        steps.append((f"model {model}", lambda: check_model(model)))
    checks = [_guarded(name, step) for name, step in steps]
    return DoctorReport(ok=all(c.ok for c in checks), checks=checks)


def format_table(report: DoctorReport) -> str:
    width = max(len(c.name) for c in report.checks)
    lines = []
    for c in report.checks:
        lines.append(f"{c.name:<{width}}  {'OK' if c.ok else 'FAIL':<4}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':<{width}}        fix: {c.fix}")
    failed = [c.name for c in report.checks if not c.ok]
    lines.append("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return "\n".join(lines)


def _guarded(name: str, step: Callable[[], Check]) -> Check:
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check, not a crashed doctor
        return Check(name=name, ok=False, detail=_one_line(exc),
                     fix="this is a bug in the check; please report it with `ltx-ray doctor --json`")


def _one_line(exc: BaseException) -> str:
    """The error and its cause on one line: torch wraps the loader's own message
    ("undefined symbol: ...") in a generic "Could not load this library"."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = str(exc).strip().splitlines()
        parts.append(f"{type(exc).__name__}: {text[0] if text else ''}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return " <- ".join(parts)[:500]


# -- installation -------------------------------------------------------------------------


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
        return Check(name="torch", ok=False, detail=_one_line(exc), fix=INSTALL_FIX)
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
        return Check(name="torchaudio", ok=False, detail=_one_line(exc),
                     fix="torchaudio must match torch exactly (2.11.0 with torch 2.11.0): " + INSTALL_FIX)
    return Check(name="torchaudio", ok=True, detail=f"{torchaudio.__version__}, native library loads")


def check_diffusers_ltx2() -> Check:
    try:
        import diffusers

        missing = [name for name in LTX2_PIPELINES if getattr(diffusers, name, None) is None]
    except Exception as exc:  # noqa: BLE001
        return Check(name="diffusers LTX2", ok=False, detail=_one_line(exc), fix=INSTALL_FIX)
    if missing:
        return Check(name="diffusers LTX2", ok=False, detail=f"diffusers {diffusers.__version__} lacks {missing}",
                     fix="ltx-ray needs diffusers 0.42.1: " + INSTALL_FIX)
    return Check(name="diffusers LTX2", ok=True, detail=f"diffusers {diffusers.__version__}: {len(LTX2_PIPELINES)} pipelines import")


def check_worker_modules() -> Check:
    for name in WORKER_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            return Check(name="worker modules", ok=False, detail=f"import {name}: {_one_line(exc)}", fix=INSTALL_FIX)
    return Check(name="worker modules", ok=True, detail=f"{len(WORKER_MODULES)} import: {', '.join(WORKER_MODULES)}")


def check_pyav() -> Check:
    """Encode a short clip through ltx-ray's own muxer (libx264 + aac) and read it back."""
    try:
        import av
        import numpy as np

        from ltx_ray.mux import probe, write_mp4

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "doctor.mp4"
            frames = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
            write_mp4(path, frames, 24.0, np.zeros((2, 9000), np.float32), 24000)
            seen = probe(path)
    except Exception as exc:  # noqa: BLE001
        return Check(name="pyav encoders", ok=False, detail=_one_line(exc),
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
        return Check(name="cuda", ok=False, detail=_one_line(exc),
                     fix="the torch wheel is the CUDA 13.0 build: the host driver must be >= 580 (nvidia-smi)")
    return Check(name="cuda", ok=True, detail="; ".join(devices))


# -- optional targets ---------------------------------------------------------------------

_RAY_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False, include_dashboard=False)
print(json.dumps([{"ip": n["NodeManagerAddress"], "alive": n["Alive"], "gpus": n["Resources"].get("GPU", 0),
                   "types": sorted(k.split(":", 1)[1] for k in n["Resources"] if k.startswith("accelerator_type:"))}
                  for n in ray.nodes()]))
"""


def check_ray(address: str) -> Check:
    """Connect as a driver in a child process, so a dead address is a bounded wait, not a hang."""
    name = f"ray {address}"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address != "auto" and host and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            return Check(name=name, ok=False, detail=f"nothing answers at {host}:{port} ({exc})",
                         fix="start the head (`ray start --head`) or give its GCS address host:6379")
    try:
        done = subprocess.run([sys.executable, "-c", _RAY_PROBE, address], capture_output=True, text=True,
                              timeout=RAY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Check(name=name, ok=False, detail=f"no answer from the Ray cluster within {RAY_TIMEOUT_S} s",
                     fix="check the address, the head's firewall, and that its Ray version is this one's")
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        return Check(name=name, ok=False, detail=last[0][:300],
                     fix="check the address and that the cluster runs the same Ray and Python versions")
    nodes = json.loads(done.stdout.strip().splitlines()[-1])
    alive = [n for n in nodes if n["alive"]]
    gpus = sum(n["gpus"] for n in alive)
    types = sorted({t for n in alive for t in n["types"]})
    return Check(name=name, ok=bool(alive),
                 detail=f"{len(alive)} live node(s), {gpus:g} GPU(s){' ' + ','.join(types) if types else ''}",
                 fix="" if alive else "the cluster answers but has no live node")


def check_store(uri: str) -> Check:
    """Write, read back and delete a probe object under ``uri``."""
    from ltx_ray.storage import OutputStore

    probe_name = f".ltx-ray-doctor-{uuid.uuid4().hex}"
    try:
        store = OutputStore(uri)
        store.put(probe_name, b"ltx-ray doctor")
        readback = store.get(probe_name)
        store.delete(probe_name)
    except Exception as exc:  # noqa: BLE001
        return Check(name=f"out {uri}", ok=False, detail=f"cannot write {uri!r}: {_one_line(exc)}",
                     fix="check the path or bucket exists and the credentials (AWS_* or the pod's role) may write it")
    ok = readback == b"ltx-ray doctor"
    return Check(name=f"out {uri}", ok=ok, detail="probe object written, read back and deleted" if ok else
                 "probe object read back different bytes", fix="" if ok else "the store does not keep what is written")


def check_model(source: str) -> Check:
    """Every component ``model_index.json`` names is there, with its size."""
    name = f"model {source}"
    try:
        root, listing = _model_listing(source)
    except FileNotFoundError as exc:
        return Check(name=name, ok=False, detail=str(exc),
                     fix="give a diffusers-format LTX-2 folder, an object-store URI of one, 'tiny' or a cached hub id")
    index = json.loads(listing["model_index.json"][1]())
    components = sorted(k for k, v in index.items()
                        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and all(v))
    sizes, absent = {}, []
    for comp in components:
        files = [size for path, (size, _) in listing.items() if path.startswith(comp + "/")]
        if files:
            sizes[comp] = sum(files)
        else:
            absent.append(comp)
    if absent:
        return Check(name=name, ok=False, detail=f"{root} lacks component(s) {', '.join(absent)} that model_index.json names",
                     fix=f"copy the missing folder(s) into {root}, or download the model again")
    total = sum(sizes.values())
    parts = ", ".join(f"{c} {_size(b)}" for c, b in sizes.items())
    return Check(name=name, ok=True, detail=f"{len(components)} components, {_size(total)} in {root}: {parts}")


def _model_listing(source: str) -> tuple[str, dict[str, tuple[int, Callable[[], bytes]]]]:
    """(root, {relative path: (bytes, reader)}) of a model, without loading or copying it."""
    import fsspec

    if source == "tiny":
        from ltx_ray.model_source import resolve_model

        source = resolve_model("tiny").path
    elif "://" not in source and source.count("/") == 1 and not Path(source).exists() and not source.startswith("."):
        source = _hub_snapshot(source)
    fs, root = fsspec.core.url_to_fs(source.removeprefix("file://"))
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise FileNotFoundError(f"model folder {source!r} does not exist")
    if not fs.exists(f"{root}/model_index.json"):
        raise FileNotFoundError(f"{source!r} has no model_index.json: not a diffusers-format folder")
    listing = {}
    for path, info in fs.find(root, detail=True).items():
        rel = path[len(root) + 1:] if path.startswith(root) else path
        listing[rel] = (int(info.get("size") or 0), lambda p=path: fs.cat_file(p))
    return source, listing


def _hub_snapshot(hub_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(hub_id, local_files_only=True)
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"hub id {hub_id!r} is not in the local hub cache "
                                f"({os.environ.get('HF_HOME', '~/.cache/huggingface')})") from None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


