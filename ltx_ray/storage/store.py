"""Outputs under ``--out``: a local folder or any fsspec URI, written atomically.

A reader never sees a half-written file under its final name: locally every file is
written beside its final name and renamed into place; on object stores a single PUT is
already all-or-nothing.
"""

from __future__ import annotations

import os
import uuid

import fsspec

from ltx_ray.errors import OutputNotWritable
from ltx_ray.storage.retry import with_retries


class OutputStore:
    """Files of one output root, named relative to it (``"job.mp4"``, ``"results/job.parquet"``)."""

    def __init__(self, uri: str):
        self.root_uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.root_uri)
        self.is_local = "file" in _protocols(self.fs) or "local" in _protocols(self.fs)
        if self.is_local:
            self.root = os.path.abspath(self.root)
            self.root_uri = self.root

    def uri(self, name: str) -> str:
        return f"{self.root_uri}/{name}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def put(self, name: str, data: bytes) -> str:
        """Write ``data`` under ``name`` atomically; returns its URI."""
        target = self.path(name)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.partial"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            with_retries(lambda: self.fs.pipe_file(target, data))
        return self.uri(name)

    def get(self, name: str) -> bytes:
        return self.fs.cat_file(self.path(name))

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def delete(self, name: str) -> None:
        if self.fs.exists(self.path(name)):
            self.fs.rm_file(self.path(name))

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the root) of the files under ``prefix``."""
        base = self.path(prefix).rstrip("/")
        if not self.fs.exists(base):
            return []
        self.fs.invalidate_cache(base)
        return sorted(p[len(self.root) + 1 :] if p.startswith(self.root) else p for p in self.fs.find(base))

    def check_writable(self) -> None:
        """Fail fast, before any model loads, when ``--out`` cannot be written."""
        name = f".ltx-ray-write-probe-{uuid.uuid4().hex}"
        try:
            self.put(name, b"ok")
            self.delete(name)
        except Exception as exc:  # noqa: BLE001 - any backend error means the same thing here
            raise OutputNotWritable(f"--out {self.root_uri!r} is not writable ({type(exc).__name__}: {exc})") from None


def _protocols(fs) -> tuple:
    return fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
