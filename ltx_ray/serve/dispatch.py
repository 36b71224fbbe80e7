"""The ingress replica's half of the durable queue: dispatch, dispatch leases, take-backs.

The queue is the job store: a job is queued when its record is. Each ingress replica sends
the jobs it accepted to the generator deployment (``submit``: the Serve handle in the app, a
fake in orchestration tests) and holds them with a dispatch lease while they wait there. A
generator replica claims the job (compare-and-swap) and holds it with its own lease
(``ltx_ray.serve.worker``). Every ``watch_interval_s`` each ingress replica sweeps the store:

- it renews the leases of the jobs it dispatches;
- a queued job whose lease ran out (its ingress replica died, or the whole app restarted) is
  claimed by one sweeping replica and dispatched again, as the same attempt;
- a running job whose lease ran out (its generator replica died) or that made no progress
  for ``stale_after_s`` is re-queued as the next attempt, or failed after ``max_attempts``.

Every take-back is a compare-and-swap, so among any number of ingress replicas exactly one
wins it; a generator that was thought dead is fenced off by the attempt number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ltx_ray.serve.config import ServeArgs
from ltx_ray.serve.jobs import JobAbandoned, JobStore
from ltx_ray.serve.lease import expired, held, new_holder, renewal
from ltx_ray.serve.protocol import JobRecord, VideoError

Submit = Callable[[str, int], Awaitable[str]]
# Serve writes this logger to the replica's log file.
log = logging.getLogger("ray.serve")
TERMINAL = ("completed", "failed")


class Dispatcher:
    """Keeps a reference to every dispatch of this ingress replica, so it can count them and
    notice a generator that died under one."""

    def __init__(self, args: ServeArgs, jobs: JobStore, submit: Submit, metrics):
        self.args = args
        self.jobs = jobs
        self.submit = submit
        self.metrics = metrics
        self.holder = new_holder("ingress")
        self.inflight: dict[str, asyncio.Task] = {}
        # Requests being accepted (a slot taken before the job exists, so a burst cannot overfill).
        self.reserved = 0
        # Jobs queued or running that other ingress replicas dispatch, at the last sweep.
        self.elsewhere = 0

    @property
    def depth(self) -> int:
        """Jobs this replica has accepted and not yet seen finish: its queue-depth gauge."""
        return len(self.inflight) + self.reserved

    def report(self) -> None:
        self.metrics.queue_depth(self.depth)

    def lease(self) -> dict:
        """The dispatch lease of a job this replica is about to dispatch."""
        return held(self.holder, self.args.lease_s)

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, video_id: str, attempt: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(video_id, attempt))
        self.inflight[video_id] = task
        self.report()

        def done(t: asyncio.Task) -> None:
            if self.inflight.get(video_id) is t:
                self.inflight.pop(video_id)
            self.report()

        task.add_done_callback(done)

    async def _run(self, video_id: str, attempt: int) -> None:
        try:
            await self.submit(video_id, attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead replica surfaces as any of Ray's errors
            log.warning("video %s attempt %d: worker failed: %s", video_id, attempt, exc)
            cause = f"the worker running the job died ({type(exc).__name__})"
            record = await self._take_back(video_id, attempt, cause, lambda r: True)
            if record is not None and record.status == "queued":
                self.inflight.pop(video_id, None)
                self.dispatch(video_id, record.attempt)
            return
        # The generator finished, skipped (another replica holds the job) or was fenced off:
        # whatever is left unfinished its lease settles. A job deleted while it ran is purged.
        if await asyncio.to_thread(self.jobs.is_deleted, video_id):
            await asyncio.to_thread(self.jobs.purge, video_id)

    # -- the sweep -------------------------------------------------------------------------

    async def sweep(self) -> None:
        now = time.time()
        elsewhere = 0
        for record in await asyncio.to_thread(self.jobs.list):
            if record.status in TERMINAL:
                continue
            mine = record.id in self.inflight
            elsewhere += not mine
            try:
                await self._sweep_one(record, mine, now)
            except JobAbandoned:
                continue  # re-queued or deleted while we looked
        self.elsewhere = elsewhere

    async def _sweep_one(self, record: JobRecord, mine: bool, now: float) -> None:
        lease_s = self.args.lease_s
        if record.status == "queued":
            if mine:
                if record.lease_owner == self.holder and record.lease_expires_at - now < lease_s / 2:
                    await asyncio.to_thread(self.jobs.change, record.id, renewal(self.holder, record.attempt, lease_s))
                return
            if not expired(record, now):
                return  # another ingress replica dispatches it
            claimed = await asyncio.to_thread(self.jobs.change, record.id, self._claim(record.attempt))
            if claimed is not None:
                log.warning("video %s attempt %d: its dispatcher went silent; dispatching it", record.id, record.attempt)
                self.dispatch(record.id, record.attempt)
            return
        stale = now - (record.progress_at or record.updated_at) > self.args.stale_after_s
        if not (expired(record, now) or stale):
            return
        if mine:
            self.inflight[record.id].cancel()
        why = "no progress for %.0f s" % (now - (record.progress_at or record.updated_at)) if stale else "its lease ran out"
        log.warning("video %s attempt %d: %s; taking it back", record.id, record.attempt, why)

        def still_lost(current: JobRecord) -> bool:
            return current.status == "in_progress" and (expired(current, time.time()) or stale)

        taken = await self._take_back(record.id, record.attempt, f"the worker went silent ({why})", still_lost)
        if taken is not None:
            self.metrics.lease_expired()
            if taken.status == "queued":
                self.dispatch(record.id, taken.attempt)

    def _claim(self, attempt: int):
        def edit(record: JobRecord) -> JobRecord | None:
            if record.status != "queued" or record.attempt != attempt or not expired(record, time.time()):
                return None
            return record.model_copy(update=held(self.holder, self.args.lease_s))

        return edit

    async def _take_back(self, video_id: str, attempt: int, cause: str, lost) -> JobRecord | None:
        """Re-queue ``attempt`` as the next one (held by this replica), or fail it after
        ``max_attempts``; None when another replica got there first or it is done."""
        max_attempts = self.args.max_attempts

        def edit(record: JobRecord) -> JobRecord | None:
            if record.attempt != attempt or record.status in TERMINAL or not lost(record):
                return None
            if attempt < max_attempts:
                return record.model_copy(update={"status": "queued", "progress": 0, "attempt": attempt + 1,
                                                 **held(self.holder, self.args.lease_s)})
            error = VideoError(code="worker_died", message=f"{cause}; attempt {attempt} of {max_attempts}, no retry left")
            return record.model_copy(update={"status": "failed", "completed_at": int(time.time()), "error": error,
                                             "lease_owner": None, "lease_expires_at": None})

        try:
            if await asyncio.to_thread(self.jobs.is_deleted, video_id):
                await asyncio.to_thread(self.jobs.purge, video_id)
                return None
            return await asyncio.to_thread(self.jobs.change, video_id, edit)
        except Exception:  # noqa: BLE001 - the store failed us; the lease brings the job back later
            log.exception("video %s attempt %d: could not take the job back", video_id, attempt)
            return None
