"""The job store: video job records, their uploads and their outputs, in one store.

Layout under the store root (a directory or any fsspec URI)::

    jobs/{id}.json          the JobRecord (status, progress, the ManifestRow to generate)
    jobs/{id}.deleted       tombstone: the video was deleted; no worker may write it again
    inputs/{id}/{name}      uploaded or fetched input images
    videos/{id}.mp4 .jpg .webp .json, videos/results/{id}.parquet   outputs of JobRunner (as in batch)

Workers write a record only while they hold its current ``attempt`` (a fencing token), so a
re-queued job is never overwritten by the worker that was thought dead.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

from ltx_ray.serve.protocol import VIDEO_ID_PATTERN, JobRecord
from ltx_ray.storage.results import result_name
from ltx_ray.storage.store import OutputStore

SPRITESHEET_SUFFIX = ".sprites.jpg"


class JobAbandoned(Exception):
    """The job was deleted or handed to a newer attempt: the worker holding it must stop."""


class JobStore(Protocol):
    """What the HTTP layer and the workers need from wherever jobs live."""

    outputs: OutputStore

    def create(self, record: JobRecord) -> None: ...
    def get(self, video_id: str) -> JobRecord | None: ...
    def put(self, record: JobRecord) -> None: ...
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
    """A JobStore on an ``OutputStore`` (local folder, s3://, gs://, memory://, ...)."""

    def __init__(self, uri: str):
        self.root = OutputStore(uri)
        self.outputs = OutputStore(self.root.uri("videos"))

    @staticmethod
    def _name(video_id: str, suffix: str) -> str:
        if not check_video_id(video_id):
            raise ValueError(f"not a video id: {video_id!r}")
        return f"jobs/{video_id}{suffix}"

    def create(self, record: JobRecord) -> None:
        self.put(record)

    def get(self, video_id: str) -> JobRecord | None:
        if not check_video_id(video_id) or self.is_deleted(video_id):
            return None
        try:
            return JobRecord.model_validate_json(self.root.get(self._name(video_id, ".json")))
        except FileNotFoundError:
            return None

    def put(self, record: JobRecord) -> None:
        record.updated_at = time.time()
        self.root.put(self._name(record.id, ".json"), record.model_dump_json().encode())

    def update(self, video_id: str, held: int, /, **fields) -> JobRecord:
        """Change fields of a record whose current attempt is ``held``; else raise JobAbandoned."""
        record = self.get(video_id)
        if record is None or record.attempt != held:
            raise JobAbandoned(f"video {video_id} was deleted or re-queued; attempt {held} stops")
        record = record.model_copy(update=fields)
        self.put(record)
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
        self.root.delete(self._name(video_id, ".json"))
