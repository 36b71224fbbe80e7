"""The thresholds of the quality checks (the checks themselves run in ltx_ray.job.qc)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QCConfig(BaseModel):
    """Thresholds of the quality checks, from a recipe's ``qc:`` block or a manifest's ``qc`` column."""

    model_config = ConfigDict(extra="forbid")

    min_motion: float | None = Field(
        default=0.3, ge=0, description="Fail below this mean absolute luma change per frame (0..255); catches frozen videos. null: off."
    )
    max_blank_fraction: float | None = Field(
        default=0.1, ge=0, le=1, description="Fail when more than this share of frames is black or a flat colour. null: off."
    )
    min_audio_dbfs: float | None = Field(
        default=-50.0, le=0, description="Fail when the audio's RMS loudness is below this (dBFS) or the track is missing "
        "although audio was asked for. null: off."
    )
    min_keyframe_ssim: float | None = Field(
        default=0.5, ge=-1, le=1, description="Fail when the frame at a keyframe (or frame 0 of an i2v job) has an SSIM "
        "below this against its image. null: off."
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="Generate at most this many times (a new seed each time) until every check passes."
    )
