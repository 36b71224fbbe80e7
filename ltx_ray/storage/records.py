"""Small records written with conditional writes: create-if-absent and compare-and-swap.

Several processes (the Serve app's ingress and generator replicas, on any node) change the
same job record. A read-then-write would let two of them both win; these writes cannot:

- **create**: writes only if nothing is at the name. S3: ``PUT`` with ``If-None-Match: *``;
  a local folder: the content is written beside the name and hard-linked into place, which
  fails when the name exists (an exclusive create that never shows a half-written file).
- **swap**: writes only if the record is still the version read (its tag, the MD5 of its
  bytes: an S3 ETag of a single PUT is exactly that). S3: ``PUT`` with ``If-Match``; a local
  folder: the compare and an atomic rename under ``flock`` on a lock file beside it, a lock
  the kernel drops with its holder, so a killed process never leaves it held.

Other backends (gs://, memory://, ...) are refused by name: they would silently fall back to
last-writer-wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid

from ltx_ray.storage.retry import with_retries
from ltx_ray.storage.store import OutputStore

# What S3 (and moto, MinIO) answer when a condition does not hold: 412, or 409 when another
# conditional write to the same key is in flight.
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def tag_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Records:
    """Conditional reads and writes of named records under one ``OutputStore``."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.is_s3 = store.root_uri.startswith(("s3://", "s3a://"))
        if not (store.is_local or self.is_s3):
            raise ValueError(f"{store.root_uri!r}: a job store needs conditional writes (create-if-absent and "
                             "compare-and-swap), which ltx-ray does on a local or shared folder and on S3 "
                             "(or an S3-compatible store with conditional writes); use one of those")

    def read(self, name: str) -> tuple[bytes, str] | None:
        """The record's bytes and tag, or None when there is none."""
        try:
            data = self.store.get(name)
        except FileNotFoundError:
            return None
        return data, tag_of(data)

    def create(self, name: str, data: bytes) -> bool:
        """Write ``data`` if nothing is at ``name``; False if something is (and it is not ``data``)."""
        target = self.store.path(name)
        if self.store.is_local:
            tmp = self._write_beside(target, data)
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        return self._put_s3(name, data, IfNoneMatch="*")

    def swap(self, name: str, data: bytes, tag: str) -> bool:
        """Write ``data`` if the record at ``name`` is still the version ``tag``; else False."""
        target = self.store.path(name)
        if self.store.is_local:
            with self._locked(target):
                try:
                    with open(target, "rb") as fh:
                        if tag_of(fh.read()) != tag:
                            return False
                except FileNotFoundError:
                    return False
                tmp = self._write_beside(target, data)
                os.replace(tmp, target)
                return True
        try:
            return self._put_s3(name, data, IfMatch=f'"{tag}"')
        except FileNotFoundError:
            return False

    def delete(self, name: str) -> None:
        """Remove the record (and locally its lock file), never in the middle of a swap."""
        if not self.store.is_local:
            self.store.delete(name)
            return
        target = self.store.path(name)
        with self._locked(target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_lock_path(target))

    def _put_s3(self, name: str, data: bytes, **condition) -> bool:
        try:
            with_retries(lambda: self._conditional_put(name, data, condition))
            return True
        except _Conflict:
            # A retried PUT whose first try landed answers 412 against its own write.
            current = self.read(name)
            return current is not None and current[0] == data

    def _conditional_put(self, name: str, data: bytes, condition: dict) -> None:
        try:
            self.store.fs.pipe_file(self.store.path(name), data, **condition)
        except (OSError, ValueError) as exc:
            if _is_conflict(exc):
                raise _Conflict from exc  # deterministic: never retried
            raise

    @staticmethod
    def _write_beside(target: str, data: bytes) -> str:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.partial"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    @staticmethod
    @contextlib.contextmanager
    def _locked(target: str):
        import fcntl

        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(_lock_path(target), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


class _Conflict(Exception):
    """A conditional write's condition did not hold."""


def _lock_path(target: str) -> str:
    return f"{os.path.dirname(target)}/.{os.path.basename(target)}.lock"


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):  # s3fs's translation of If-None-Match's 412
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    error = response.get("Error", {})
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code") in _CONFLICT_CODES or status in {"412", "409"}
