"""Quality checks on a finished mp4: the gate a video passes before it may reach a storefront.

Every check reads the mp4 as a player would (decoded, after compression), so the same code
audits our own outputs (``JobRunner`` after muxing) and videos made elsewhere
(``ltx-ray qc FILE.mp4``):

- ``motion``: mean absolute luma change between consecutive frames (0..255); ~0 is a frozen video.
- ``blank_fraction``: share of frames that are black (mean luma < 16) or blank (luma std < 3).
- ``audio_dbfs``: RMS loudness of the audio track in dBFS; silence (or no track when audio
  was asked for) fails.
- ``keyframe@F``: SSIM (and PSNR, reported) of output frame F against the image meant to
  be there, after fitting the image to the video size the way inputs are fitted.

A threshold of ``None`` turns its check off; a check that does not apply (no audio asked
for, no reference images) is reported with verdict ``None`` and never fails the video.
"""

from __future__ import annotations

import math

import av
import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from ltx_ray.schema.qc import QCConfig

BLACK_LUMA, BLANK_STD = 16.0, 3.0
SILENCE_DBFS = -120.0
ANALYSIS_WIDTH = 256  # motion and blank checks look at a downscaled luma; detail does not matter there


class Check(BaseModel):
    """One check's outcome; ``passed`` is None when the check does not apply or is off."""

    model_config = ConfigDict(populate_by_name=True)

    score: float | None = Field(description="The measured value (rounded)")
    threshold: float | None = Field(description="The limit it was held to; null when the check is off")
    passed: bool | None = Field(serialization_alias="pass", validation_alias="pass", description="true/false, null: not applicable")
    detail: str = Field(default="", description="What was measured, in words")


class QCReport(BaseModel):
    """Every check of one video and the overall verdict."""

    model_config = ConfigDict(populate_by_name=True)

    checks: dict[str, Check]
    passed: bool = Field(serialization_alias="pass", validation_alias="pass")

    def failed(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.passed is False]

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def fit_image(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The image as the model saw it: cover ``size`` (width, height) and centre-crop, RGB uint8."""
    return np.asarray(ImageOps.fit(img.convert("RGB"), size, method=Image.Resampling.LANCZOS))


def check_video(
    path: str,
    config: QCConfig,
    references: list[tuple[Image.Image, int]] | None = None,
    expect_audio: bool | None = None,
) -> QCReport:
    """Run every configured check on the mp4 at ``path``.

    ``references`` are (image, output frame) pairs; ``expect_audio`` None means "check the
    audio if the file has any".
    """
    references = references or []
    want = {frame for _, frame in references}
    lumas, kept, (width, height) = _decode_video(path, want)
    checks: dict[str, Check] = {}

    diffs = [float(np.abs(b - a).mean()) for a, b in zip(lumas, lumas[1:])]
    motion = float(np.mean(diffs)) if diffs else 0.0
    checks["motion"] = _at_least(motion, config.min_motion, f"mean |luma change| per frame over {len(lumas)} frames")

    blank = [float(y.mean()) < BLACK_LUMA or float(y.std()) < BLANK_STD for y in lumas]
    fraction = sum(blank) / max(1, len(blank))
    checks["blank_fraction"] = _at_most(fraction, config.max_blank_fraction, f"{sum(blank)} of {len(blank)} frames black or flat")

    audio = _decode_audio(path)
    if audio is None:
        if expect_audio and config.min_audio_dbfs is not None:
            checks["audio_dbfs"] = Check(score=None, threshold=config.min_audio_dbfs, passed=False,
                                         detail="audio was asked for but the file has no audio track")
        else:
            checks["audio_dbfs"] = Check(score=None, threshold=config.min_audio_dbfs, passed=None, detail="no audio track")
    else:
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
        dbfs = max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS
        checks["audio_dbfs"] = _at_least(dbfs, config.min_audio_dbfs, "RMS loudness of the whole track")

    for image, frame in references:
        name = f"keyframe@{frame}"
        if name in checks:  # two images for one frame (ltx-ray qc allows it): keep both verdicts
            name = f"{name}#{sum(k.startswith(name) for k in checks) + 1}"
        if frame not in kept:
            checks[name] = Check(score=None, threshold=config.min_keyframe_ssim, passed=False,
                                 detail=f"the video has no frame {frame} (it has {len(lumas)})")
            continue
        target = fit_image(image, (width, height))
        s, p = ssim(_luma(kept[frame]), _luma(target)), psnr(kept[frame], target)
        checks[name] = _at_least(s, config.min_keyframe_ssim, f"SSIM of frame {frame} against its image (PSNR {p:.1f} dB)")
    return QCReport(checks=checks, passed=not any(c.passed is False for c in checks.values()))


def _at_least(score: float, threshold: float | None, detail: str) -> Check:
    passed = None if threshold is None else score >= threshold
    return Check(score=round(score, 4), threshold=threshold, passed=passed, detail=detail)


def _at_most(score: float, threshold: float | None, detail: str) -> Check:
    passed = None if threshold is None else score <= threshold
    return Check(score=round(score, 4), threshold=threshold, passed=passed, detail=detail)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _decode_video(path: str, want: set[int]) -> tuple[list[np.ndarray], dict[int, np.ndarray], tuple[int, int]]:
    """Downscaled luma of every frame, full RGB only of the ``want`` frames (memory stays small)."""
    lumas, kept, size = [], {}, (0, 0)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        for index, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            size = (rgb.shape[1], rgb.shape[0])
            if index in want:
                kept[index] = rgb
            step = max(1, rgb.shape[1] // ANALYSIS_WIDTH)
            lumas.append(_luma(rgb[::step, ::step]))
    return lumas, kept, size


def _decode_audio(path: str) -> np.ndarray | None:
    """All audio samples as float [C, S], or None when the file has no audio track."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        chunks = [f.to_ndarray().astype(np.float32) for f in container.decode(audio=0)]
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32)
    # Planar float frames are [C, S]; packed ones [1, S*C]: loudness does not care which.
    return np.concatenate([c.reshape(1, -1) for c in chunks], axis=1)


def _box(x: np.ndarray, win: int) -> np.ndarray:
    """Mean over every ``win`` x ``win`` window (valid region), via summed-area tables."""
    s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[win:, win:] - s[:-win, win:] - s[win:, :-win] + s[:-win, :-win]) / (win * win)


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7, data_range: float = 255.0) -> float:
    """Mean structural similarity of two grayscale images (Wang et al. 2004, uniform 7x7 window,
    sample covariances, as scikit-image's ``structural_similarity`` defaults; agrees with it to 1e-6)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    cov = n / (n - 1)
    ma, mb = _box(a, win), _box(b, win)
    va = cov * (_box(a * a, win) - ma * ma)
    vb = cov * (_box(b * b, win) - mb * mb)
    vab = cov * (_box(a * b, win) - ma * mb)
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    # scikit-image crops the border half-window before averaging; the valid region already does.
    return float(s.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (capped at 100 for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))
