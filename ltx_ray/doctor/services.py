"""The optional targets: a Ray cluster (``--address``), an output store (``--out``) and a
model's components (``--model``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from ltx_ray.doctor.report import Check, one_line

RAY_TIMEOUT_S = 20  # the bound for a dead address is 30 s for the whole check; leave room for the TCP probe


_RAY_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False, include_dashboard=False)
print(json.dumps([{"ip": n["NodeManagerAddress"], "alive": n["Alive"], "gpus": n["Resources"].get("GPU", 0),
                   "types": sorted(k.split(":", 1)[1] for k in n["Resources"] if k.startswith("accelerator_type:"))}
                  for n in ray.nodes()]))
"""


def check_ray(address: str, timeout_s: float = RAY_TIMEOUT_S) -> Check:
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
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Check(name=name, ok=False, detail=f"no answer from the Ray cluster within {timeout_s:g} s",
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
    from ltx_ray.storage.store import OutputStore

    probe_name = f".ltx-ray-doctor-{uuid.uuid4().hex}"
    try:
        store = OutputStore(uri)
        store.put(probe_name, b"ltx-ray doctor")
        readback = store.get(probe_name)
        store.delete(probe_name)
    except Exception as exc:  # noqa: BLE001
        return Check(name=f"out {uri}", ok=False, detail=f"cannot write {uri!r}: {one_line(exc)}",
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
        from ltx_ray.engine.weights import resolve_model

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


