"""mp4 muxing (streams, durations, AI tag) and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ltx_ray.errors import OutputNotWritable
from ltx_ray.storage.mux import decode_frames, probe, thumbnail_jpeg, write_mp4
from ltx_ray.storage.store import OutputStore


def synthetic(frames=25, w=128, h=96, seconds_audio=None, rate=24000):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(frames, h, w, 3), dtype=np.uint8)
    audio = None
    if seconds_audio is not None:
        t = np.arange(int(seconds_audio * rate)) / rate
        audio = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.5
    return video, audio


@pytest.mark.parametrize("audio_seconds", [0.9, 1.2])
def test_mp4_has_h264_and_aac_and_audio_as_long_as_the_video(tmp_path, audio_seconds):
    video, audio = synthetic(25, seconds_audio=audio_seconds)
    info = write_mp4(tmp_path / "a.mp4", video, 24.0, audio, 24000, metadata={"ltx_ray_job_id": "a", "ai_generated": "true"})
    p = probe(tmp_path / "a.mp4")
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (p.width, p.height, p.num_frames, p.fps) == (128, 96, 25, 24.0)
    assert p.audio_channels == 2 and p.audio_sample_rate == 24000
    assert abs(p.audio_duration_s - p.video_duration_s) < 1 / 24
    assert p.metadata["ltx_ray_job_id"] == "a" and p.metadata["ai_generated"] == "true"
    # short audio is padded with silence up to the last video frame; long audio is cut
    assert info.audio_pad_samples == (25000 - 21600 if audio_seconds < 1 else 0)


def test_video_only_mp4_has_no_audio_stream(tmp_path):
    video, _ = synthetic(9)
    write_mp4(tmp_path / "v.mp4", video, 30.0)
    p = probe(tmp_path / "v.mp4")
    assert p.audio_codec is None and p.num_frames == 9 and p.fps == 30.0


def test_frames_survive_encoding_closely(tmp_path):
    video = np.zeros((9, 64, 64, 3), dtype=np.uint8)
    video[:, :32] = (200, 30, 40)
    write_mp4(tmp_path / "c.mp4", video, 24.0)
    decoded = decode_frames(tmp_path / "c.mp4")
    assert decoded.shape == video.shape
    assert np.abs(decoded.astype(int) - video.astype(int)).mean() < 4


def test_thumbnail_is_a_jpeg():
    video, _ = synthetic(9)
    assert thumbnail_jpeg(video)[:2] == b"\xff\xd8"


def test_store_put_is_atomic_and_leaves_no_partial_files(tmp_path):
    store = OutputStore(str(tmp_path / "out"))
    store.put("a.mp4", b"first")

    class Boom(Exception):
        pass

    real_write = os.fsync

    def failing_fsync(fd):
        raise Boom("disk full")

    os.fsync = failing_fsync
    try:
        with pytest.raises(Boom):
            store.put("a.mp4", b"second, half written")
    finally:
        os.fsync = real_write
    assert (tmp_path / "out" / "a.mp4").read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path / "out")) == ["a.mp4"]


def test_unwritable_output_is_reported_before_anything_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputNotWritable, match="not writable"):
        OutputStore(str(blocker / "out")).check_writable()
