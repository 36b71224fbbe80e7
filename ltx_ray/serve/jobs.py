"""The job store: video job records, their uploads and their outputs, in one store.

Layout under the store root (a directory or any fsspec URI)::

    jobs/{id}.json          the JobRecord (status, progress, the ManifestRow to generate)
    jobs/{id}.deleted       tombstone: the video was deleted; no worker may write it again
    inputs/{id}/{name}      uploaded or fetched input images
    videos/{id}.mp4 .jpg .webp .json, videos/results/{id}.parquet   outputs of JobRunner (as in batch)

Every change of a record is a conditional write (``ltx_ray.storage.records``): created only
if absent, changed only if still the version read. So any number of ingress and generator
replicas share the store, and two of them can never both claim a job or both re-queue it.
Workers write a record only while they hold its current ``attempt`` (a fencing token), so a
re-queued job is never overwritten by the worker that was thought dead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Protocol

from ltx_ray.serve.protocol import VIDEO_ID_PATTERN, JobRecord
from ltx_ray.storage.records import Records
from ltx_ray.storage.results import result_name
from ltx_ray.storage.store import OutputStore

# A change that keeps losing the race this many times is a store gone wrong, not contention.
MAX_SWAPS = 100

SPRITESHEET_SUFFIX = ".sprites.jpg"


class JobAbandoned(Exception):
    """The job was deleted or handed to a newer attempt: the worker holding it must stop."""


class JobStore(Protocol):
    """What the HTTP layer and the workers need from wherever jobs live."""

    outputs: OutputStore

    def create(self, record: JobRecord) -> bool: ...
    def get(self, video_id: str) -> JobRecord | None: ...
    def change(self, video_id: str, edit: Callable[[JobRecord], JobRecord | None]) -> JobRecord | None: ...
    def update(self, video_id: str, held: int, /, **fields) -> JobRecord: ...
    def list(self) -> list[JobRecord]: ...
    def save_input(self, video_id: str, name: str, data: bytes) -> str: ...
    def mark_deleted(self, video_id: str) -> None: ...
    def is_deleted(self, video_id: str) -> bool: ...
    def purge(self, video_id: str) -> None: ...


def check_video_id(video_id: str) -> bool:
    """Only ids the server minted: nothing a caller sends can name a path outside the store."""
    return bool(VIDEO_ID_PATTERN.fullmatch(video_id))


class StoreJobStore:
    """A JobStore on a local (or shared) folder or S3: the stores with conditional writes."""

    def __init__(self, uri: str):
        self.root = OutputStore(uri)
        self.records = Records(self.root)
        self.outputs = OutputStore(self.root.uri("videos"))

    @staticmethod
    def _name(video_id: str, suffix: str) -> str:
        if not check_video_id(video_id):
            raise ValueError(f"not a video id: {video_id!r}")
        return f"jobs/{video_id}{suffix}"

    def create(self, record: JobRecord) -> bool:
        """Store a new record; False if a record with its id exists already (nothing is written)."""
        record.updated_at = time.time()
        return self.records.create(self._name(record.id, ".json"), record.model_dump_json().encode())

    def get(self, video_id: str) -> JobRecord | None:
        read = self._read(video_id)
        return read[0] if read else None

    def _read(self, video_id: str) -> tuple[JobRecord, str] | None:
        if not check_video_id(video_id) or self.is_deleted(video_id):
            return None
        read = self.records.read(self._name(video_id, ".json"))
        return (JobRecord.model_validate_json(read[0]), read[1]) if read else None

    def change(self, video_id: str, edit: Callable[[JobRecord], JobRecord | None]) -> JobRecord | None:
        """Compare-and-swap: ``edit`` the current record until the write lands on the version it
        read. Returns the record written, or None when there is no record (deleted) or ``edit``
        returned None (nothing to change). What ``edit`` raises stops the change."""
        for _ in range(MAX_SWAPS):
            read = self._read(video_id)
            if read is None:
                return None
            new = edit(read[0])
            if new is None:
                return None
            new = new.model_copy(update={"updated_at": time.time()})
            if self.records.swap(self._name(video_id, ".json"), new.model_dump_json().encode(), read[1]):
                return new
        raise RuntimeError(f"video {video_id}: the record changed under {MAX_SWAPS} writes in a row")

    def update(self, video_id: str, held: int, /, **fields) -> JobRecord:
        """Change fields of a record whose current attempt is ``held``; else raise JobAbandoned."""

        def edit(record: JobRecord) -> JobRecord:
            if record.attempt != held:
                raise JobAbandoned(f"video {video_id} was re-queued as attempt {record.attempt}; attempt {held} stops")
            return record.model_copy(update=fields)

        record = self.change(video_id, edit)
        if record is None:
            raise JobAbandoned(f"video {video_id} was deleted; attempt {held} stops")
        return record

    def list(self) -> list[JobRecord]:
        """Every live record, oldest first."""
        names = self.root.list("jobs")
        deleted = {n[: -len(".deleted")] for n in names if n.endswith(".deleted")}
        records = []
        for name in names:
            if name.endswith(".json") and name[: -len(".json")] not in deleted:
                try:
                    records.append(JobRecord.model_validate(json.loads(self.root.get(name))))
                except FileNotFoundError:
                    continue  # purged while we listed
        return sorted(records, key=lambda r: (r.seq, r.id))

    def save_input(self, video_id: str, name: str, data: bytes) -> str:
        self._name(video_id, "")  # validates the id
        return self.root.put(f"inputs/{video_id}/{name}", data)

    def mark_deleted(self, video_id: str) -> None:
        self.root.put(self._name(video_id, ".deleted"), b"")

    def is_deleted(self, video_id: str) -> bool:
        return self.root.exists(self._name(video_id, ".deleted"))

    def purge(self, video_id: str) -> None:
        """Remove the record, inputs and outputs of a deleted video (the tombstone stays)."""
        media = [f"{folder}{video_id}{ext}" for folder in ("", "rejected/") for ext in (".mp4", ".jpg", ".webp")]
        for name in [*media, f"{video_id}.json", f"{video_id}{SPRITESHEET_SUFFIX}", result_name(video_id)]:
            self.outputs.delete(name)
        for name in self.root.list(f"inputs/{video_id}"):
            self.root.delete(name)
        self.records.delete(self._name(video_id, ".json"))
