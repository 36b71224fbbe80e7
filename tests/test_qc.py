"""QC on synthetic videos built to pass and to fail each check (real PyAV encode + decode)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ltx_ray.cli import main as cli_main
from ltx_ray.job.qc import check_video, ssim
from ltx_ray.schema.qc import QCConfig
from ltx_ray.storage.mux import write_mp4

W, H, F, FPS, SR = 128, 96, 17, 24.0, 24000


def scene(shift: int, seed: int = 0) -> np.ndarray:
    """A textured picture (4x4-pixel random tiles, like fabric) panned by ``shift`` pixels."""
    tiles = np.random.default_rng(seed).integers(0, 256, (H // 4, (W + 64) // 4, 3), dtype=np.uint8)
    texture = tiles.repeat(4, axis=0).repeat(4, axis=1)
    return np.ascontiguousarray(texture[:, shift : shift + W])


def tone(db: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(F / FPS * SR)) / SR
    amp = 10 ** (db / 20) * np.sqrt(2)  # RMS of a sine is amp / sqrt(2)
    return np.repeat((amp * np.sin(2 * np.pi * 440 * t))[None], channels, axis=0).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qc")
    moving = np.stack([scene(2 * i) for i in range(F)])
    frozen = np.stack([scene(0)] * F)
    black = np.zeros((F, H, W, 3), np.uint8)
    made = {
        "good": (moving, tone(-20)),
        "frozen": (frozen, tone(-20)),
        "black": (black, tone(-20)),
        "silent": (moving, np.zeros((2, int(F / FPS * SR)), np.float32)),
        "mute": (moving, None),
    }
    paths = {}
    for name, (frames, audio) in made.items():
        paths[name] = tmp / f"{name}.mp4"
        write_mp4(paths[name], frames, FPS, audio, SR if audio is not None else None)
    Image.fromarray(scene(0)).save(tmp / "first.png")
    Image.fromarray(scene(2 * 16)).save(tmp / "last.png")
    # a different product photo: the same size, another picture
    Image.fromarray(scene(0, seed=1)).save(tmp / "other.png")
    paths["dir"] = tmp
    return paths


def test_a_moving_loud_video_that_matches_its_images_passes_every_check(videos):
    refs = [(Image.open(videos["dir"] / "first.png"), 0), (Image.open(videos["dir"] / "last.png"), 16)]
    report = check_video(videos["good"], QCConfig(), refs, expect_audio=True)
    assert report.passed, report.checks
    assert set(report.checks) == {"motion", "blank_fraction", "audio_dbfs", "keyframe@0", "keyframe@16"}
    assert report.checks["motion"].score > 5
    assert report.checks["blank_fraction"].score == 0
    assert report.checks["audio_dbfs"].score == pytest.approx(-20, abs=1.5)
    assert report.checks["keyframe@0"].score > 0.8 and report.checks["keyframe@16"].score > 0.8


def test_a_frozen_video_fails_the_motion_check_only(videos):
    report = check_video(videos["frozen"], QCConfig(), expect_audio=True)
    assert report.failed() == ["motion"]
    assert report.checks["motion"].score < 0.3


def test_a_black_video_fails_the_blank_frame_check(videos):
    report = check_video(videos["black"], QCConfig(), expect_audio=True)
    assert "blank_fraction" in report.failed() and report.checks["blank_fraction"].score == 1.0


def test_silent_audio_fails_when_audio_was_asked_for(videos):
    assert check_video(videos["silent"], QCConfig(), expect_audio=True).failed() == ["audio_dbfs"]
    assert check_video(videos["silent"], QCConfig(), expect_audio=True).checks["audio_dbfs"].score <= -100


def test_a_missing_audio_track_fails_only_when_audio_was_asked_for(videos):
    assert check_video(videos["mute"], QCConfig(), expect_audio=True).failed() == ["audio_dbfs"]
    relaxed = check_video(videos["mute"], QCConfig(), expect_audio=False)
    assert relaxed.passed and relaxed.checks["audio_dbfs"].passed is None


def test_a_frame_that_ignores_its_keyframe_image_fails_adherence(videos):
    refs = [(Image.open(videos["dir"] / "other.png"), 0), (Image.open(videos["dir"] / "first.png"), 0 + 16)]
    report = check_video(videos["good"], QCConfig(), refs)
    assert report.failed() == ["keyframe@0", "keyframe@16"]
    assert report.checks["keyframe@0"].score < 0.3


def test_a_threshold_of_none_turns_its_check_off(videos):
    report = check_video(videos["frozen"], QCConfig(min_motion=None))
    assert report.passed and report.checks["motion"].passed is None


def test_ssim_is_one_for_identical_images_and_low_for_unrelated_ones():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64)).astype(np.float32)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.integers(0, 256, (64, 64)).astype(np.float32)) < 0.1


def test_the_qc_command_prints_one_json_object_last_and_exits_by_verdict(videos, capsys):
    d = videos["dir"]
    code = cli_main(["qc", str(videos["good"]), "--image", f"{d / 'first.png'}@0", "--expect-audio", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["pass"] is True
    assert report["checks"]["keyframe@0"]["pass"] is True and report["checks"]["motion"]["score"] > 5

    code = cli_main(["qc", str(videos["frozen"]), "--json", "--min-audio-dbfs", "off"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and report["pass"] is False
    assert report["checks"]["motion"]["pass"] is False and report["checks"]["audio_dbfs"]["pass"] is None


def test_the_qc_command_stops_with_exit_2_on_an_unreadable_file(tmp_path, capsys):
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    assert cli_main(["qc", str(tmp_path / "x.mp4"), "--json"]) == 2
    assert cli_main(["qc", str(tmp_path / "x.mp4"), "--image", "nope.png"]) == 2
    assert "IMAGE@FRAME" in capsys.readouterr().err
