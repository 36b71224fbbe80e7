"""Mux frames and audio into an mp4 (H.264 yuv420p + AAC) with PyAV, and make the thumbnail.

Written by hand rather than with diffusers' ``encode_video`` because the container must
carry an AI-generated tag and the audio must be cut or padded to the video's exact length.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from pydantic import BaseModel


class MuxInfo(BaseModel):
    """What was written, as a player would see it."""

    width: int
    height: int
    num_frames: int
    fps: float
    duration_s: float
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_pad_samples: int = 0


def fit_audio(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> tuple[np.ndarray, int]:
    """Cut or zero-pad audio [C, S] to the video's duration; returns (audio, samples padded).

    The vocoder's length is a whole number of audio latents (25 per second), which can
    fall a little short of or beyond the last video frame.
    """
    target = round(num_frames / fps * sample_rate)
    have = audio.shape[1]
    if have >= target:
        return audio[:, :target], 0
    pad = np.zeros((audio.shape[0], target - have), dtype=audio.dtype)
    return np.concatenate([audio, pad], axis=1), target - have


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    metadata: dict[str, str] | None = None,
    crf: int = 18,
) -> MuxInfo:
    """Encode uint8 frames [F, H, W, 3] (and float audio [C, S] in -1..1) into ``path``."""
    num_frames, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    pad = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"}) as out:
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        vstream = out.add_stream("libx264", rate=rate)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": str(crf)}
        astream = None
        if audio is not None:
            audio, pad = fit_audio(np.asarray(audio, dtype=np.float32), sample_rate, num_frames, fps)
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            astream = out.add_stream("aac", rate=sample_rate, layout=layout)
        for frame in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in vstream.encode():
            out.mux(packet)
        if astream is not None:
            aframe = av.AudioFrame.from_ndarray(np.clip(audio, -1.0, 1.0), format="fltp", layout=layout)
            aframe.sample_rate = sample_rate
            # pts 0 lets the encoder mark its priming samples (negative pts), so the muxer
            # writes an edit list and players see audio exactly as long as the video.
            aframe.pts = 0
            aframe.time_base = Fraction(1, sample_rate)
            for packet in astream.encode(aframe):
                out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return MuxInfo(
        width=width,
        height=height,
        num_frames=num_frames,
        fps=float(rate),
        duration_s=num_frames / float(rate),
        audio_sample_rate=sample_rate if audio is not None else None,
        audio_channels=int(audio.shape[0]) if audio is not None else None,
        audio_pad_samples=pad,
    )


def thumbnail_jpeg(frames: np.ndarray, max_side: int = 512) -> bytes:
    """The middle frame as a JPEG no larger than ``max_side``."""
    img = Image.fromarray(frames[len(frames) // 2])
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def preview_webp(frames: np.ndarray, max_side: int = 256, count: int = 8, fps: float = 4.0) -> bytes:
    """A short looping animated WebP of ``count`` frames spread over the clip (for review pages)."""
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    images = []
    for index in picks:
        img = Image.fromarray(frames[index])
        img.thumbnail((max_side, max_side))
        images.append(img)
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, quality=70)
    return buf.getvalue()


class Probe(BaseModel):
    """What is in an mp4, read back by decoding it."""

    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    pix_fmt: str | None
    num_frames: int
    fps: float | None
    video_duration_s: float | None
    audio_duration_s: float | None
    audio_sample_rate: int | None
    audio_channels: int | None
    metadata: dict[str, str]


def probe(source: str | Path | bytes) -> Probe:
    """Decode an mp4 fully and report its streams (used by QC, tests and ``ltx-ray qc``)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(handle) as container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        frames = 0
        audio_samples = 0
        for frame in container.decode(*[s for s in (v, a) if s is not None]):
            if isinstance(frame, av.VideoFrame):
                frames += 1
            else:
                audio_samples += frame.samples
        fps = float(v.average_rate) if v is not None and v.average_rate else None
        audio_duration = None
        if a is not None:
            # The stream duration honours the edit list that trims the AAC priming
            # samples, as players do; the decoded sample count would not.
            audio_duration = (
                float(a.duration * a.time_base) if a.duration else audio_samples / a.sample_rate
            )
        return Probe(
            video_codec=v.codec_context.name if v is not None else None,
            audio_codec=a.codec_context.name if a is not None else None,
            width=v.codec_context.width if v is not None else None,
            height=v.codec_context.height if v is not None else None,
            pix_fmt=v.codec_context.pix_fmt if v is not None else None,
            num_frames=frames,
            fps=fps,
            video_duration_s=frames / fps if fps else None,
            audio_duration_s=audio_duration,
            audio_sample_rate=a.sample_rate if a is not None else None,
            audio_channels=a.codec_context.channels if a is not None else None,
            metadata=dict(container.metadata),
        )


def decode_frames(source: str | Path | bytes) -> np.ndarray:
    """All video frames as uint8 RGB [F, H, W, 3]."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(handle) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
