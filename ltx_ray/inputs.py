"""Fetch a job's conditioning inputs (images) from wherever their URIs point."""

from __future__ import annotations

import io

import fsspec
from PIL import Image, UnidentifiedImageError

from ltx_ray.ltx2 import JobInputs
from ltx_ray.retry import with_retries
from ltx_ray.schema import Job

MAX_IMAGE_PIXELS = 8192 * 8192
MAX_INPUT_BYTES = 64 * 1024 * 1024


class InputError(Exception):
    """A job's input cannot be used; the message names the field, the value and the fix."""


def read_uri_bytes(uri: str, field: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    def read() -> bytes:
        fs, path = fsspec.core.url_to_fs(uri)
        with fs.open(path, "rb") as fh:
            return fh.read(limit + 1)

    try:
        data = with_retries(read)
    except FileNotFoundError:
        raise InputError(f"{field} = {uri!r}: no such file; check the path or URI") from None
    except Exception as exc:  # noqa: BLE001 - any backend error is reported on the row
        raise InputError(f"{field} = {uri!r}: cannot be read ({type(exc).__name__}: {exc})") from None
    if len(data) > limit:
        raise InputError(f"{field} = {uri!r}: larger than {limit // 2**20} MiB; use a smaller file")
    return data


def load_image(uri: str, field: str, size: tuple[int, int]) -> Image.Image:
    """Decode an image and fit it to the output ``size`` (width, height) by centre-crop + resize."""
    data = read_uri_bytes(uri, field)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"{field} = {uri!r}: {img.width}x{img.height} is too large; use at most 8192x8192")
            img.load()
            rgb = img.convert("RGB")
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{field} = {uri!r}: the image is too large to decode safely; use at most 8192x8192") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{field} = {uri!r}: not a readable image ({exc}); give a PNG, JPEG or WebP file") from None
    return _cover(rgb, size)


def _cover(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover ``size`` and centre-crop, so the subject keeps its aspect ratio."""
    from PIL import ImageOps

    return ImageOps.fit(img, size, method=Image.Resampling.LANCZOS)


def fetch_inputs(job: Job) -> JobInputs:
    size = (job.width, job.height)
    if job.task == "i2v":
        return JobInputs(image=load_image(job.image_uri, "image_uri", size))
    if job.task == "keyframes":
        return JobInputs(
            keyframes=[
                (load_image(k.uri, f"keyframes[{i}].uri", size), k.frame, k.strength)
                for i, k in enumerate(job.keyframes)
            ]
        )
    return JobInputs()
