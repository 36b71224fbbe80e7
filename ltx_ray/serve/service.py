"""What each route does, behind the HTTP layer: accept, queue, report, cancel, serve outputs.

One ``VideoService`` lives in each ingress replica. It never blocks the event loop (store
I/O runs in threads) and never answers 5xx once a job is queued. The queue itself is the
job store; its ``Dispatcher`` (``ltx_ray.serve.dispatch``) sends each job to the generator
deployment and, with the other ingress replicas, takes back jobs whose holder died.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import uuid
from typing import Any

from PIL import Image, UnidentifiedImageError

from ltx_ray.job.inputs import MAX_IMAGE_PIXELS
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.serve.config import ServeArgs
from ltx_ray.serve.dispatch import Dispatcher, Submit
from ltx_ray.serve.intake import Upload, check_server_paths, parse_create, set_input_uri, validate_row
from ltx_ray.serve.jobs import SPRITESHEET_SUFFIX, JobStore, check_video_id
from ltx_ray.serve.metrics import NoMetrics
from ltx_ray.serve.protocol import APIError, JobRecord, Video, VideoDeleted, VideoList, not_found

# Serve writes this logger to the replica's log file.
log = logging.getLogger("ray.serve")


class VideoService:
    """The /v1/videos operations over one job store and one generator."""

    def __init__(self, args: ServeArgs, jobs: JobStore, submit: Submit, fetcher, metrics=None):
        self.args = args
        self.jobs = jobs
        self.submit = submit
        self.fetcher = fetcher
        self.model_name = args.served_model_name or args.model
        self._watcher: asyncio.Task | None = None
        # Queue depth and lease expiries for the operator (ltx_ray.serve.metrics.ServeMetrics in the app).
        self.metrics = metrics or NoMetrics()
        self.dispatcher = Dispatcher(args, jobs, submit, self.metrics)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Sweep at once (what a previous app left queued or running is taken back as its
        leases run out), then every ``watch_interval_s``."""
        await self.dispatcher.sweep()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.args.watch_interval_s)
            # Ray's metrics agent drops a gauge nobody set for two export intervals (2 x 10 s):
            # an idle queue is reported again, or it would vanish from the dashboard.
            self.dispatcher.report()
            try:
                await self.dispatcher.sweep()
            except Exception:  # noqa: BLE001 - the watcher must outlive a store hiccup
                log.exception("job watcher: sweep failed")

    @property
    def pending(self) -> int:
        """Jobs queued or running in the whole app, as this replica last counted them (the 429 bound)."""
        return self.dispatcher.depth + self.dispatcher.elsewhere

    def _check_size(self, job, intake) -> None:
        if job.width * job.height * job.num_frames > self.args.max_frame_pixels:
            param = intake.api_names.get("width", "size") if job.task != "retake" else intake.api_names["video_uri"]
            raise APIError(400, f"{param}: {job.width}x{job.height} x {job.num_frames} frames is more than this "
                           f"server's limit of {self.args.max_frame_pixels} pixels; lower the size or the length",
                           param=param, code="request_too_large")

    # -- routes ----------------------------------------------------------------------------

    async def create(self, fields: dict[str, Any], files: dict[str, list[Upload]], idempotency: str | None = None) -> Video:
        """Accept a job. ``idempotency`` (the caller's key and its Idempotency-Key header) names
        the job: a retried POST with the same key gets the same video, never a second one."""
        if self.pending >= self.args.max_pending_jobs:
            raise APIError(429, f"the queue is full ({self.args.max_pending_jobs} jobs queued or running); "
                           "retry later", code="queue_full")
        self.dispatcher.reserved += 1
        reserved = True
        self.dispatcher.report()
        try:
            intake = parse_create(fields, files, max_prompt_chars=self.args.max_prompt_chars)
            video_id = video_id_for(idempotency)
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
                fps=job.fps, seed=job.seed, **self.dispatcher.lease(),
            )
            if not await asyncio.to_thread(self.jobs.create, record):
                # The same Idempotency-Key again (a client retrying a POST whose answer it lost):
                # the job it created, not a second one.
                return (await self._record(video_id)).to_video()
            # From here on nothing may fail: the job is queued, and a 5xx would make the SDK
            # retry the POST and queue it twice.
            self.dispatcher.reserved -= 1  # the reservation becomes the dispatch: the job is counted once
            reserved = False
            self.dispatcher.dispatch(video_id, record.attempt)
            return record.to_video()
        finally:
            if reserved:
                self.dispatcher.reserved -= 1
            self.dispatcher.report()

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


def video_id_for(idempotency: str | None) -> str:
    """A fresh id, or the one an idempotency key (already scoped to its API key) always gets."""
    if idempotency is None:
        return f"video_{uuid.uuid4().hex}"
    return "video_" + hashlib.sha256(idempotency.encode()).hexdigest()[:32]


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
