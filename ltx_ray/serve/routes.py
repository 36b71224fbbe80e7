"""The HTTP layer of /v1/videos: thin routes over ``VideoService``, errors as envelopes."""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ltx_ray.serve.intake import Upload
from ltx_ray.serve.protocol import APIError, Video, VideoDeleted, VideoList
from ltx_ray.serve.security import ApiKeys, BodyLimitMiddleware
from ltx_ray.serve.service import VideoService

MAX_FORM_FIELDS = 256
MAX_FORM_FILES = 64


def build_api(service: VideoService, keys: ApiKeys) -> FastAPI:
    """The FastAPI app of the endpoint; ``service`` does the work."""

    @asynccontextmanager
    async def lifespan(_app):
        await service.start()
        yield

    app = FastAPI(title="ltx-ray /v1/videos", lifespan=lifespan)
    poll_header = {"openai-poll-after-ms": str(service.args.poll_after_ms)}

    def authorized(request: Request) -> None:
        keys.check(request.headers.get("authorization"))

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @v1.post("/videos", response_model=Video)
    async def create_video(request: Request) -> Video:
        fields, files = await _read_request(request)
        return await service.create(fields, files, idempotency=_idempotency(request))

    @v1.get("/videos", response_model=VideoList)
    async def list_videos(
        after: str | None = None,
        limit: int = Query(default=20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
    ):
        page = await service.list(after, limit, order)
        return JSONResponse(page.model_dump(mode="json"), headers=poll_header)

    @v1.get("/videos/{video_id}", response_model=Video)
    async def retrieve_video(video_id: str):
        return JSONResponse((await service.get(video_id)).model_dump(mode="json"), headers=poll_header)

    @v1.delete("/videos/{video_id}", response_model=VideoDeleted)
    async def delete_video(video_id: str) -> VideoDeleted:
        return await service.delete(video_id)

    @v1.get("/videos/{video_id}/content")
    async def video_content(video_id: str, variant: Literal["video", "thumbnail", "spritesheet"] = "video"):
        data, media_type = await service.content(video_id, variant)
        return Response(data, media_type=media_type, headers=poll_header)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok", "pending_jobs": service.pending}

    app.include_router(v1)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.args.max_upload_bytes)
    return app


def _idempotency(request: Request) -> str | None:
    """The Idempotency-Key header, scoped to the caller's credentials (two keys never share a job)."""
    key = request.headers.get("idempotency-key")
    if not key:
        return None
    if len(key) > 255:
        raise APIError(400, "Idempotency-Key: longer than 255 characters", param="Idempotency-Key", code="invalid_value")
    caller = hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()
    return f"{caller}:{key}"


async def _read_request(request: Request) -> tuple[dict, dict[str, list[Upload]]]:
    """Form fields and file parts of a multipart/urlencoded body, or the fields of a JSON one."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object", code="invalid_json")
        return body, {}
    form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    fields: dict = {}
    files: dict[str, list[Upload]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.setdefault(name, []).append(
                Upload(filename=value.filename or "", content_type=value.content_type, data=await value.read())
            )
        elif name in fields:
            raise APIError(400, f"{name}: is given more than once", param=name, code="duplicate_parameter")
        else:
            fields[name] = value
    await form.close()
    return fields, files


def _install_error_handlers(app: FastAPI) -> None:
    """Every error in the ``{"error": {message, type, param, code}}`` envelope the SDK reads."""

    @app.exception_handler(APIError)
    async def api_error(_request, exc: APIError):
        return JSONResponse(exc.envelope(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        param = ".".join(loc) or None
        error = APIError(400, f"{param or 'request'}: {first.get('msg')}", param=param, code="invalid_value")
        return JSONResponse(error.envelope(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        error = APIError(exc.status_code, str(exc.detail), code="http_error")
        return JSONResponse(error.envelope(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):
        error = APIError(500, f"internal error ({type(exc).__name__}); see the server log", code="internal_error")
        # x-should-retry: false, so a client never re-sends a request that may have queued a job.
        return JSONResponse(error.envelope(), status_code=500, headers={"x-should-retry": "false"})
