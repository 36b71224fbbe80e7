"""What each route does, behind the HTTP layer: accept, queue, report, cancel, serve outputs.

One ``VideoService`` lives in the ingress replica. It never blocks the event loop (store
I/O runs in threads) and never answers 5xx once a job is queued. It dispatches each job to
the generator deployment through ``submit`` (a coroutine: the Serve handle in the app, a
fake in orchestration tests) and keeps a reference to every dispatch, so it can count the
queue (429 when full) and notice a worker that died mid-job (the job is re-queued, or
failed after ``max_attempts``; never left in_progress).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image, UnidentifiedImageError

from ltx_ray.job.inputs import MAX_IMAGE_PIXELS
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.serve.config import ServeArgs
from ltx_ray.serve.intake import Upload, check_server_paths, parse_create, set_input_uri, validate_row
from ltx_ray.serve.jobs import SPRITESHEET_SUFFIX, JobAbandoned, JobStore, check_video_id
from ltx_ray.serve.metrics import NoMetrics
from ltx_ray.serve.protocol import APIError, JobRecord, Video, VideoDeleted, VideoError, VideoList, not_found

Submit = Callable[[str, int], Awaitable[str]]
# Serve writes this logger to the replica's log file.
log = logging.getLogger("ray.serve")
TERMINAL = ("completed", "failed")


class VideoService:
    """The /v1/videos operations over one job store and one generator."""

    def __init__(self, args: ServeArgs, jobs: JobStore, submit: Submit, fetcher, metrics=None):
        self.args = args
        self.jobs = jobs
        self.submit = submit
        self.fetcher = fetcher
        self.model_name = args.served_model_name or args.model
        self._inflight: dict[str, asyncio.Task] = {}
        self._reserved = 0
        self._watcher: asyncio.Task | None = None
        # Queue depth and lease expiries for the operator (ltx_ray.serve.metrics.ServeMetrics in the app).
        self.metrics = metrics or NoMetrics()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-queue what a previous app left queued or running (oldest first)."""
        for record in await asyncio.to_thread(self.jobs.list):
            if record.status not in TERMINAL:
                # A new attempt fences off any worker of the old app still holding the job.
                record = record.model_copy(update={"status": "queued", "progress": 0, "attempt": record.attempt + 1})
                await asyncio.to_thread(self.jobs.put, record)
                self._dispatch(record.id, record.attempt)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Forever: find jobs whose dispatch was lost or whose worker went silent, and settle them.

        A dead replica normally surfaces as an error on its dispatch; this sweep covers what
        does not (a request Serve retried or left hanging, a settle that failed to write).
        """
        while True:
            await asyncio.sleep(self.args.watch_interval_s)
            # Ray's metrics agent drops a gauge nobody set for two export intervals (2 x 10 s):
            # an idle queue is reported again, or it would vanish from the dashboard.
            self.metrics.queue_depth(self.pending)
            try:
                await self._sweep()
            except Exception:  # noqa: BLE001 - the watcher must outlive a store hiccup
                log.exception("job watcher: sweep failed")

    async def _sweep(self) -> None:
        now = time.time()
        for record in await asyncio.to_thread(self.jobs.list):
            if record.status in TERMINAL or now - record.updated_at < 2 * self.args.watch_interval_s:
                continue  # done, or too fresh to judge (a create may not have dispatched yet)
            task = self._inflight.get(record.id)
            stale = record.status == "in_progress" and now - record.updated_at > self.args.stale_after_s
            if task is not None and not stale:
                continue
            log.warning("video %s attempt %d: %s; settling it", record.id, record.attempt,
                        "no progress for %.0f s" % (now - record.updated_at) if stale else "no dispatch holds it")
            if stale:
                self.metrics.lease_expired()
            if task is not None:
                task.cancel()
            retry = await asyncio.to_thread(self._settle, record.id, record.attempt,
                                            "the worker went silent" if stale else "the job's dispatch was lost")
            if retry is not None:
                self._dispatch(record.id, retry)

    @property
    def pending(self) -> int:
        return len(self._inflight) + self._reserved

    def _check_size(self, job, intake) -> None:
        if job.width * job.height * job.num_frames > self.args.max_frame_pixels:
            param = intake.api_names.get("width", "size") if job.task != "retake" else intake.api_names["video_uri"]
            raise APIError(400, f"{param}: {job.width}x{job.height} x {job.num_frames} frames is more than this "
                           f"server's limit of {self.args.max_frame_pixels} pixels; lower the size or the length",
                           param=param, code="request_too_large")

    # -- routes ----------------------------------------------------------------------------

    async def create(self, fields: dict[str, Any], files: dict[str, list[Upload]]) -> Video:
        if self.pending >= self.args.max_pending_jobs:
            raise APIError(429, f"the queue is full ({self.args.max_pending_jobs} jobs queued or running); "
                           "retry later", code="queue_full")
        self._reserved += 1
        reserved = True
        self.metrics.queue_depth(self.pending)
        try:
            intake = parse_create(fields, files, max_prompt_chars=self.args.max_prompt_chars)
            video_id = f"video_{uuid.uuid4().hex}"
            row = validate_row(intake, video_id)  # first with placeholders: a bad request fetches nothing
            check_server_paths(row, self.args.lora_prefixes, intake)
            job = row.resolve(ModelProfile())
            if job.task != "retake":  # a retake is its source's size and length: checked once the source is here
                self._check_size(job, intake)
            for ref in intake.inputs:
                data = ref.upload.data if ref.upload is not None else await self.fetcher.fetch(ref.url, ref.param)
                if job.task == "retake" and ref.path == ("video_uri",):
                    job = job.model_copy(update=await asyncio.to_thread(_video_geometry, data, ref.param))
                    self._check_size(job, intake)
                name = "-".join(str(p) for p in ref.path)
                if ref.is_image:
                    name += "." + await asyncio.to_thread(_check_image, data, ref.param)
                uri = await asyncio.to_thread(self.jobs.save_input, video_id, name, data)
                set_input_uri(intake.row, ref.path, uri)
            row = validate_row(intake, video_id)
            record = JobRecord(
                id=video_id, model=intake.model or self.model_name, prompt=row.prompt,
                seconds=intake.seconds or f"{round(job.duration_s, 2):g}", size=f"{job.width}x{job.height}",
                row=row.model_dump(mode="json", exclude_none=True), task=job.task, num_frames=job.num_frames,
                fps=job.fps, seed=job.seed,
            )
            await asyncio.to_thread(self.jobs.create, record)
            # From here on nothing may fail: the job is queued, and a 5xx would make the SDK
            # retry the POST and queue it twice.
            self._reserved -= 1  # the reservation becomes the dispatch: the job is counted once
            reserved = False
            self._dispatch(video_id, record.attempt)
            return record.to_video()
        finally:
            if reserved:
                self._reserved -= 1
                self.metrics.queue_depth(self.pending)

    async def get(self, video_id: str) -> Video:
        return (await self._record(video_id)).to_video()

    async def list(self, after: str | None, limit: int, order: str) -> VideoList:
        records = await asyncio.to_thread(self.jobs.list)
        if order == "desc":
            records.reverse()
        if after is not None:
            ids = [r.id for r in records]
            if after not in ids:
                raise APIError(400, f"after: no video with id {after!r}", param="after", code="invalid_value")
            records = records[ids.index(after) + 1:]
        page = records[:limit]
        return VideoList(data=[r.to_video() for r in page], first_id=page[0].id if page else None,
                         last_id=page[-1].id if page else None, has_more=len(records) > limit)

    async def delete(self, video_id: str) -> VideoDeleted:
        record = await self._record(video_id)
        await asyncio.to_thread(self.jobs.mark_deleted, video_id)
        if record.status != "in_progress":
            # A queued job's dispatch finds no record and returns at once; a running one is
            # stopped by its worker at the next step, which then purges it.
            await asyncio.to_thread(self.jobs.purge, video_id)
        return VideoDeleted(id=video_id)

    async def content(self, video_id: str, variant: str) -> tuple[bytes, str]:
        record = await self._record(video_id)
        if record.status != "completed":
            raise APIError(400, f"video {video_id} is {record.status}, not completed; poll until it completes",
                           param="video_id", code="video_not_ready")
        outputs = self.jobs.outputs
        try:
            if variant == "video":
                return await asyncio.to_thread(outputs.get, f"{video_id}.mp4"), "video/mp4"
            if variant == "thumbnail":
                return await asyncio.to_thread(outputs.get, f"{video_id}.jpg"), "image/jpeg"
            return await asyncio.to_thread(_spritesheet, outputs, video_id), "image/jpeg"
        except FileNotFoundError:
            raise not_found(video_id) from None  # deleted while we read

    async def _record(self, video_id: str) -> JobRecord:
        record = await asyncio.to_thread(self.jobs.get, video_id) if check_video_id(video_id) else None
        if record is None:
            raise not_found(video_id)
        return record

    # -- dispatch and recovery -------------------------------------------------------------

    def _dispatch(self, video_id: str, attempt: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(video_id, attempt))
        self._inflight[video_id] = task
        self.metrics.queue_depth(self.pending)

        def done(t: asyncio.Task) -> None:
            if self._inflight.get(video_id) is t:
                self._inflight.pop(video_id)
            self.metrics.queue_depth(self.pending)

        task.add_done_callback(done)

    async def _run(self, video_id: str, attempt: int) -> None:
        try:
            outcome = await self.submit(video_id, attempt)
            cause = f"the worker returned {outcome!r} without finishing the job"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead replica surfaces as any of Ray's errors
            log.warning("video %s attempt %d: worker failed: %s", video_id, attempt, exc)
            cause = f"the worker running the job died ({type(exc).__name__})"
        try:
            retry = await asyncio.to_thread(self._settle, video_id, attempt, cause)
        except Exception:  # noqa: BLE001 - the store failed us; the next app start re-queues the job
            log.exception("video %s attempt %d: could not settle the job", video_id, attempt)
            return
        if retry is not None:
            self._inflight.pop(video_id, None)
            self._dispatch(video_id, retry)

    def _settle(self, video_id: str, attempt: int, cause: str) -> int | None:
        """After a dispatch ends: leave the job terminal, or return the attempt to re-queue it as."""
        if self.jobs.is_deleted(video_id):
            self.jobs.purge(video_id)
            return None
        record = self.jobs.get(video_id)
        if record is None or record.attempt != attempt or record.status in TERMINAL:
            return None
        try:
            if attempt < self.args.max_attempts:
                self.jobs.update(video_id, attempt, status="queued", progress=0, attempt=attempt + 1)
                return attempt + 1
            self.jobs.update(video_id, attempt, status="failed", completed_at=int(time.time()),
                             error=VideoError(code="worker_died", message=f"{cause}; attempt {attempt} of "
                                              f"{self.args.max_attempts}, no retry left"))
        except JobAbandoned:
            pass
        return None


def _check_image(data: bytes, param: str) -> str:
    """Refuse what is not a readable, reasonably sized image; returns its file extension."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise APIError(400, f"{param}: {img.width}x{img.height} is too large; use at most 8192x8192",
                               param=param, code="invalid_image")
            img.verify()
            return (img.format or "img").lower()
    except APIError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise APIError(400, f"{param}: not a readable image; send a PNG, JPEG or WebP file", param=param,
                       code="invalid_image") from None


def _video_geometry(data: bytes, param: str) -> dict:
    """A retake source's width, height, frame count and frame rate, or a 400 if it is no video."""
    import av

    from ltx_ray.storage.mux import probe

    try:
        p = probe(data)
    except (av.error.FFmpegError, ValueError) as exc:
        raise APIError(400, f"{param}: not a readable video ({exc}); send an mp4, mov or webm file", param=param,
                       code="invalid_video") from None
    if not p.num_frames or not p.width:
        raise APIError(400, f"{param}: has no video frames; send an mp4, mov or webm file", param=param, code="invalid_video")
    return {"width": p.width, "height": p.height, "num_frames": p.num_frames, "fps": p.fps or 24.0}


def _spritesheet(outputs, video_id: str, tiles: int = 16, columns: int = 4, tile_width: int = 160) -> bytes:
    """Up to 16 evenly spaced frames in a grid, built once and kept beside the video."""
    name = f"{video_id}{SPRITESHEET_SUFFIX}"
    if outputs.exists(name):
        return outputs.get(name)
    from ltx_ray.storage.mux import decode_frames

    frames = decode_frames(outputs.get(f"{video_id}.mp4"))
    count = min(tiles, len(frames))
    picks = [frames[round(i * (len(frames) - 1) / max(1, count - 1))] for i in range(count)]
    height, width = picks[0].shape[:2]
    tw = min(tile_width, width)
    th = max(1, round(height * tw / width))
    cols = min(columns, count)
    sheet = Image.new("RGB", (cols * tw, math.ceil(count / cols) * th))
    for i, frame in enumerate(picks):
        sheet.paste(Image.fromarray(frame).resize((tw, th)), ((i % cols) * tw, (i // cols) * th))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=85)
    outputs.put(name, buf.getvalue())
    return buf.getvalue()
