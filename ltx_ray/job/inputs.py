"""Fetch a job's conditioning inputs (images, videos, audio) from wherever their URIs point.

Videos and audio are decoded with PyAV; frames are fitted to the output size here, so the
engine receives exactly what it conditions on. The LTX-2 log-mel features of a2v audio are
computed by ltx_ray.engine.audio (torchaudio) with the model's own VAE parameters, in the engine.
"""

from __future__ import annotations

import io

import av
import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from ltx_ray.engine.types import JobInputs
from ltx_ray.errors import InputError
from ltx_ray.schema.fields import MAX_FRAMES, SEGMENT_OVERLAP_FRAMES, frames_for_seconds
from ltx_ray.schema.job import Job
from ltx_ray.storage.retry import with_retries

MAX_IMAGE_PIXELS = 8192 * 8192
MAX_INPUT_BYTES = 64 * 1024 * 1024


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


def load_video(uri: str, field: str, size: tuple[int, int] | None, max_frames: int,
               data: bytes | None = None) -> tuple[list[Image.Image], float]:
    """The first ``max_frames`` frames of a video, each fitted to ``size`` (None: as they are); and
    its frame rate. ``data``: the file's bytes when the caller has read them already."""
    data = read_uri_bytes(uri, field) if data is None else data
    frames: list[Image.Image] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError(f"{field} = {uri!r}: has no video stream; give an mp4, mov or webm video")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 24.0
            for frame in container.decode(stream):
                image = frame.to_image()
                frames.append(_cover(image, size) if size else image)
                if len(frames) >= max_frames:
                    break
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise InputError(f"{field} = {uri!r}: not a readable video ({exc}); give an mp4, mov or webm video") from None
    if len(frames) < SEGMENT_OVERLAP_FRAMES:
        raise InputError(
            f"{field} = {uri!r}: has {len(frames)} frames; give a video of at least {SEGMENT_OVERLAP_FRAMES} frames"
        )
    return frames, fps


def load_audio(uri: str, field: str, required: bool = True, data: bytes | None = None) -> tuple[np.ndarray, int] | None:
    """The whole audio track as float32 [channels, samples] at its own rate (or None if absent and not required)."""
    data = read_uri_bytes(uri, field) if data is None else data
    chunks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                if not required:
                    return None
                raise InputError(f"{field} = {uri!r}: has no audio stream; give a wav, mp3, m4a or a video with sound")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            # Planar float keeps every channel apart whatever the source format.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise InputError(f"{field} = {uri!r}: not readable audio ({exc}); give a wav, mp3 or m4a file") from None
    if not chunks:
        raise InputError(f"{field} = {uri!r}: the audio track is empty; give audio of at least 1 s")
    return np.concatenate(chunks, axis=1).astype(np.float32), rate


def fetch_inputs(job: Job) -> JobInputs:
    """Decode every input the job's task needs, fitted to its output size."""
    size = (job.width, job.height)
    if job.task == "i2v":
        return JobInputs(image=load_image(job.image_uri, "image_uri", size))
    if job.task == "v2v":
        frames, _ = load_video(job.video_uri, "video_uri", size, job.num_frames)
        return JobInputs(video=frames)
    if job.task in ("extend", "retake"):  # the clip and its sound, from one read of the file
        data = read_uri_bytes(job.video_uri, "video_uri")
        # retake: as it is, since the source sets the size and its frames are kept
        fitted, most = (size, MAX_FRAMES) if job.task == "extend" else (None, MAX_FRAMES + 1)
        frames, fps = load_video(job.video_uri, "video_uri", fitted, most, data=data)
        track = load_audio(job.video_uri, "video_uri", required=False, data=data)
        return JobInputs(video=frames, video_fps=fps, audio=track[0] if track else None,
                         audio_rate=track[1] if track else None)
    if job.task == "control":
        frames, _ = load_video(job.control_uri, "control_uri", size, job.num_frames)
        return JobInputs(control=frames)
    if job.task == "a2v":
        wave, rate = load_audio(job.audio_uri, "audio_uri")
        have, need = wave.shape[1] / rate, job.num_frames / job.fps
        if not job.num_frames_from_audio and have < need - 1e-3:
            # The frozen track is what the video follows: padding it with silence would
            # generate seconds of video that follow nothing.
            raise InputError(
                f"audio_uri = {job.audio_uri!r}: the track is {have:.2f} s, {need - have:.2f} s shorter than the "
                f"{need:.2f} s video ({job.num_frames} frames at {job.fps:g} fps); give a track of at least "
                f"{need:.2f} s, or leave out num_frames and seconds so that the track sets the length"
            )
        return JobInputs(audio=wave, audio_rate=rate)
    if job.task == "keyframes":
        return JobInputs(
            keyframes=[
                (load_image(k.uri, f"keyframes[{i}].uri", size), k.frame, k.strength)
                for i, k in enumerate(job.keyframes)
            ]
        )
    return JobInputs()


def resolve_from_inputs(job: Job, inputs: JobInputs) -> Job:
    """What an input sets: a2v without num_frames or seconds takes the given audio's length;
    a retake the source video's size, length and frame rate."""
    if job.retake is not None:
        return _retake_source(job, inputs)
    if not job.num_frames_from_audio or inputs.audio is None:
        return job
    seconds = inputs.audio.shape[1] / inputs.audio_rate
    frames = min(MAX_FRAMES, frames_for_seconds(seconds, job.fps))
    # Never longer than the audio: the last frame must still have sound under it.
    while frames > 9 and frames / job.fps > seconds + 1e-6:
        frames -= 8
    return job.model_copy(update={"num_frames": frames})


def _retake_source(job: Job, inputs: JobInputs) -> Job:
    """The retake job at its source's geometry, or the row error that says why it cannot be."""
    uri, (width, height), count, fps = job.video_uri, inputs.video[0].size, len(inputs.video), round(inputs.video_fps, 3)
    if (count - 1) % 8 or count < 9:
        lower = max(9, (count - 1) // 8 * 8 + 1)
        raise InputError(f"video_uri = {uri!r}: has {count} frames; a retake needs 8k + 1 frames (e.g. {lower} or "
                         f"{lower + 8}) to lie on LTX-2's latent grid; trim the video")
    if width % 32 or height % 32:
        raise InputError(f"video_uri = {uri!r}: is {width}x{height}; a retake needs sides that are multiples of 32 "
                         f"(e.g. {width // 32 * 32 or 32}x{height // 32 * 32 or 32}); crop or resize the video")
    if count > job.segment_frames:
        raise InputError(f"video_uri = {uri!r}: has {count} frames, more than one pass of segment_frames "
                         f"{job.segment_frames}; retake a shorter clip or raise segment_frames")
    source = {"width": width, "height": height, "num_frames": count, "fps": fps}
    for name, value in job.retake.given.items():
        if abs(value - source[name]) > 1e-3:
            raise InputError(f"{name} = {value:g}: the source video has {name} {source[name]:g}; a retake keeps the "
                             f"source's size, length and frame rate: leave {name} out or give {source[name]:g}")
    seconds = count / fps
    for name in ("start_s", "end_s"):
        value = getattr(job.retake, name)
        if value > seconds + 1e-6 or (name == "start_s" and value >= seconds):
            raise InputError(f"{name} = {value:g}: outside the {seconds:.3g} s source video; give "
                             f"0 <= start_s < end_s <= {seconds:.3g}")
    return job.model_copy(update=source)
