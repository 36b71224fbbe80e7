"""The bad-input corpus: rows people really write wrong, with the field the error must name.

Each case: (kind, row overrides, field named in the error, a fragment of the message). Rows
start from a valid tiny t2v row; ``{img}``, ``{dir}`` and friends are filled with files the
test draws (see ``materialise``).
"""

from __future__ import annotations

import json
import struct
import wave
import zlib
from pathlib import Path

from PIL import Image

BASE = {"prompt": "a lamp on a desk", "width": 256, "height": 160, "num_frames": 17}

# Caught by validation, before any model loads.
VALIDATION_CASES = [
    ("width as text", {"width": "wide"}, "width", "valid integer"),
    ("prompt as number", {"prompt": 12345}, "prompt", "valid string"),
    ("audio as text", {"audio": "loud"}, "audio", "valid boolean"),
    ("missing prompt", {"prompt": None, "_drop": "prompt"}, "prompt", "required"),
    ("unknown column", {"colour": "red"}, "colour", "x_"),
    ("empty prompt", {"prompt": ""}, "prompt", "at least 1 character"),
    ("blank prompt", {"prompt": " \t\n"}, "prompt", "blank"),
    ("huge prompt", {"prompt": "word " * 7000}, "prompt", "at most 32000"),
    ("width not multiple of 32", {"width": 250}, "width", "multiple of 32; use 256"),
    ("zero height", {"height": 0}, "height", "greater than or equal to 32"),
    ("huge width", {"width": 16384}, "width", "less than or equal to 4096"),
    ("frames not 8k+1", {"num_frames": 16}, "num_frames", "use 9 or 17"),
    ("zero frames", {"num_frames": 0}, "num_frames", "greater than or equal to 9"),
    ("huge frames", {"num_frames": 100001}, "num_frames", "less than or equal to 1441"),
    ("NaN fps", {"fps": float("nan")}, "fps", "finite"),
    ("infinite seconds", {"num_frames": None, "seconds": float("inf")}, "seconds", "more than 0 and at most 60.04"),
    ("seconds as a word", {"num_frames": None, "seconds": "soon"}, "seconds", "a number of seconds"),
    ("length bounds without auto", {"min_seconds": 2.0}, "min_seconds", "needs seconds 'auto'"),
    ("auto bounds reversed", {"num_frames": None, "seconds": "auto", "min_seconds": 5.0, "max_seconds": 3.0},
     "min_seconds", "not below max_seconds"),
    ("auto length for keyframes", {"num_frames": None, "seconds": "auto",
                                   "keyframes": [{"uri": "{img}", "frame": 0, "strength": 1.0}]}, "seconds", "t2v or i2v"),
    ("auto length without a duration head", {"num_frames": None, "seconds": "auto"}, "seconds", "no duration head"),
    ("unknown decoder", {"decoder": "vae"}, "decoder", "'conv' or 'diffusion'"),
    ("diffusion decoder on a model without one", {"decoder": "diffusion"}, "decoder", "no diffusion decoder"),
    ("negative seed", {"seed": -1}, "seed", "greater than or equal to 0"),
    ("negative seconds", {"num_frames": None, "seconds": -2.0}, "seconds", "more than 0"),
    ("huge steps", {"steps": 10**6}, "steps", "less than or equal to 500"),
    ("NaN guidance", {"guidance_scale": float("nan")}, "guidance_scale", "finite"),
    ("job_id with ../", {"job_id": "../../etc/passwd"}, "job_id", "letters, digits"),
    ("job_id with /", {"job_id": "a/b"}, "job_id", "letters, digits"),
    ("job_id with space", {"job_id": "my video"}, "job_id", "letters, digits"),
    ("job_id with RTL override", {"job_id": "abc\u202egpm.exe"}, "job_id", "letters, digits"),
    ("job_id fullwidth letters", {"job_id": "\uff4a\uff4f\uff42"}, "job_id", "letters, digits"),
    ("job_id zero-width space", {"job_id": "a\u200bb"}, "job_id", "letters, digits"),
    ("job_id too long", {"job_id": "a" * 129}, "job_id", "letters, digits"),
    ("unknown task", {"task": "t2i"}, "task", "'t2v', 'i2v', 'keyframes', 'v2v', 'extend', 'a2v', 'control' or 'retake'"),
    ("task contradicts inputs", {"task": "keyframes"}, "task", "keyframes job needs keyframes"),
    ("keyframe outside the video", {"keyframes": [{"uri": "{img}", "frame": 17, "strength": 1.0}]}, "keyframes", "outside the video"),
    ("negative keyframe frame", {"keyframes": [{"uri": "{img}", "frame": -1, "strength": 1.0}]}, "keyframes.0.frame", "greater than or equal to 0"),
    ("duplicate keyframe frames", {"keyframes": [{"uri": "{img}", "frame": 8, "strength": 1.0}, {"uri": "{img}", "frame": 8, "strength": 1.0}]}, "keyframes", "repeat a frame"),
    ("unsorted keyframes", {"keyframes": [{"uri": "{img}", "frame": 9, "strength": 1.0}, {"uri": "{img}", "frame": 0, "strength": 1.0}]}, "keyframes", "out of order"),
    ("keyframe strength above 1", {"keyframes": [{"uri": "{img}", "frame": 0, "strength": 3.0}]}, "keyframes.0.strength", "less than or equal to 1"),
    ("unsupported scheme", {"image_uri": "ftp://example.com/a.png"}, "image_uri", "unsupported scheme 'ftp'"),
    ("javascript scheme", {"image_uri": "javascript://alert(1)"}, "image_uri", "unsupported scheme"),
    ("metadata not JSON", {"metadata": "{sku: A1"}, "metadata", "not valid JSON"),
    ("metadata a list", {"metadata": json.dumps(["a"])}, "metadata", "JSON object"),
    ("both frames and seconds", {"seconds": 2.0}, "num_frames", "give only one"),
    ("retake without end_s", {"task": "retake", "video_uri": "{dir}/clip.mp4", "start_s": 0.5}, "end_s", "needs start_s and end_s"),
    ("retake range reversed", {"video_uri": "{dir}/clip.mp4", "start_s": 0.6, "end_s": 0.2}, "end_s", "not after start_s 0.6"),
    ("retake range on a t2v row", {"start_s": 0.2, "end_s": 0.6}, "start_s", "applies to retake only"),
    ("negative retake start", {"video_uri": "{dir}/clip.mp4", "start_s": -1.0, "end_s": 0.5}, "start_s", "greater than or equal to 0"),
]

# Caught when the worker fetches the inputs: the row fails at fetch_inputs.
FETCH_CASES = [
    ("missing image file", {"image_uri": "{dir}/nope.png"}, "image_uri", "no such file"),
    ("image is a folder", {"image_uri": "{dir}"}, "image_uri", "cannot be read"),
    ("non-image bytes", {"image_uri": "{text}"}, "image_uri", "not a readable image"),
    ("truncated image", {"image_uri": "{truncated}"}, "image_uri", "not a readable image"),
    ("enormous image", {"image_uri": "{enormous}"}, "image_uri", "too large"),
    ("corrupt video input", {"video_uri": "{corrupt_video}"}, "video_uri", "not a readable video"),
    ("corrupt audio input", {"audio_uri": "{corrupt_audio}"}, "audio_uri", "not readable audio"),
    # 0.25 s of sound under a 17-frame (0.71 s) video: the error says by how much.
    ("a2v track shorter than the video", {"audio_uri": "{short_audio}"}, "audio_uri",
     "the track is 0.25 s, 0.46 s shorter than the 0.71 s video (17 frames at 24 fps)"),
    # The source is 256x160, 17 frames at 24 fps (0.708 s): BASE's size and length, so they agree.
    ("retake past the source's end", {"video_uri": "{source_video}", "start_s": 0.2, "end_s": 3.0}, "end_s",
     "outside the 0.708 s source video; give 0 <= start_s < end_s <= 0.708"),
    ("retake length disagrees with the source", {"video_uri": "{source_video}", "start_s": 0.1, "end_s": 0.2, "num_frames": 9},
     "num_frames", "the source video has num_frames 17"),
    ("retake source off the latent grid", {"video_uri": "{odd_video}", "start_s": 0.1, "end_s": 0.2}, "video_uri",
     "has 12 frames; a retake needs 8k + 1 frames"),
    ("missing keyframe image", {"keyframes": [{"uri": "{img}", "frame": 0, "strength": 1.0}, {"uri": "{dir}/gone.png", "frame": 9, "strength": 1.0}]}, "keyframes[1].uri", "no such file"),
]


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims a huge size: decoding it would take tens of GB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(data + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def materialise(tmp: Path) -> dict[str, str]:
    """Draw the files the corpus points at; returns the placeholders."""
    img = tmp / "ok.png"
    Image.new("RGB", (64, 48), (200, 30, 40)).save(img)
    text = tmp / "notes.png"
    text.write_text("this is not a picture")
    truncated = tmp / "truncated.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:120])
    enormous = tmp / "enormous.png"
    _png_header_only(enormous, 60000, 60000)
    (tmp / "a-folder").mkdir()
    corrupt_video = tmp / "clip.mp4"
    corrupt_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    corrupt_audio = tmp / "voice.wav"
    corrupt_audio.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 64)
    short_audio = tmp / "short.wav"
    with wave.open(str(short_audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(struct.pack("<4000h", *[(i * 97) % 20000 - 10000 for i in range(4000)]))
    from ltx_ray.storage.mux import write_mp4

    source_video, odd_video = tmp / "source.mp4", tmp / "odd.mp4"
    write_mp4(source_video, _bars(17), 24.0, None, None)
    write_mp4(odd_video, _bars(12), 24.0, None, None)
    return {"source_video": str(source_video), "odd_video": str(odd_video), "short_audio": str(short_audio), "corrupt_video": str(corrupt_video), "corrupt_audio": str(corrupt_audio), "img": str(img), "text": str(text), "truncated": str(truncated), "enormous": str(enormous), "dir": str(tmp / "a-folder")}


def _bars(count: int):
    """``count`` 256x160 frames of a bar moving right."""
    import numpy as np

    frames = np.full((count, 160, 256, 3), 30, np.uint8)
    for i in range(count):
        frames[i, 40:120, 8 * i : 8 * i + 40] = (220, 180, 40)
    return frames


def build_row(index: int, overrides: dict, files: dict[str, str]) -> dict:
    row = {"job_id": f"bad-{index:02d}", **BASE}
    drop = overrides.get("_drop")
    for key, value in overrides.items():
        if key == "_drop":
            continue
        row[key] = _fill(value, files)
    if drop:
        row.pop(drop, None)
    return row


def _fill(value, files):
    if isinstance(value, str) and value.startswith("{") and "}" in value and not value.startswith("{sku"):
        return value.format(**files)
    if isinstance(value, list):
        return [_fill(v, files) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, files) for k, v in value.items()}
    return value
