"""Leases on job records: who holds a job, until when, renewed by heartbeats.

A queued job is held by the ingress replica dispatching it; a running job by the generator
replica running it. The holder moves ``lease_expires_at`` on every ``lease_s / 3``; a replica
that dies stops doing so, and once the lease has run out any ingress replica takes the job
back (a compare-and-swap, so only one does). Leases live in the record itself, so a restart
of any replica, or of the whole app on the same store, finds them there.
"""

from __future__ import annotations

import threading
import time
import uuid

from ltx_ray.serve.jobs import JobAbandoned, JobStore
from ltx_ray.serve.protocol import JobRecord


def new_holder(kind: str) -> str:
    """A replica's name in leases: ``ingress-…`` or ``generator-…``, unique per process."""
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def expired(record: JobRecord, now: float) -> bool:
    return record.lease_expires_at is None or record.lease_expires_at <= now


def held(holder: str, lease_s: float) -> dict:
    """The fields that give ``holder`` the job for ``lease_s`` from now."""
    return {"lease_owner": holder, "lease_expires_at": time.time() + lease_s}


def renewal(holder: str, attempt: int, lease_s: float):
    """A ``JobStore.change`` edit: extend the lease, if ``holder`` still holds this attempt."""

    def edit(record: JobRecord) -> JobRecord:
        if record.attempt != attempt or record.lease_owner != holder:
            raise JobAbandoned(f"video {record.id}: attempt {attempt} is no longer held by {holder}")
        return record.model_copy(update=held(holder, lease_s))

    return edit


class Heartbeat:
    """Renews a running job's lease from a thread while the job runs (denoising, decoding and
    uploading alike: a step callback alone would go quiet for minutes during a 4K decode).

    ``lost`` turns true when the job was taken back or deleted; the worker stops at its next step.
    """

    def __init__(self, jobs: JobStore, video_id: str, attempt: int, holder: str, lease_s: float):
        self.jobs, self.video_id = jobs, video_id
        self.edit = renewal(holder, attempt, lease_s)
        self.period_s = lease_s / 3
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{video_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                if self.jobs.change(self.video_id, self.edit) is None:
                    self.lost = True  # deleted
            except JobAbandoned:
                self.lost = True
            except Exception:  # noqa: BLE001 - a store hiccup: the next beat tries again within the lease
                continue
            if self.lost:
                return
