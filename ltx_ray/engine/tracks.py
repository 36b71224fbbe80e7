"""A given sound track as the model takes it (audio-VAE latents) and as the mp4 carries it.

a2v conditions on a track and muxes it unchanged; retake keeps a source video's sound outside
the span it generates again. Both encode the track as ltx-core's ``AudioProcessor`` does
(engine.audio.log_mel) and lay the waveform out like the model's own audio.
"""

from __future__ import annotations

import numpy as np
import torch

from ltx_ray.engine.audio import fit_length, log_mel, resample, with_channels


def latents_per_second(pipe) -> float:
    """Audio latent frames per second of the model's audio VAE (25 for LTX-2)."""
    cfg = pipe.audio_vae.config
    return cfg.sample_rate / cfg.mel_hop_length / pipe.audio_vae.temporal_compression_ratio


def encode_track(pipe, wave: np.ndarray, rate: int, seconds: float, device) -> torch.Tensor:
    """The track's audio-VAE latents ``[1, C, L, M]`` spanning ``seconds`` exactly: as many
    latent frames as the pipeline would have drawn as noise for a video that long."""
    vae = pipe.audio_vae
    cfg = vae.config
    wave = fit_length(wave, round(seconds * rate))
    mel = log_mel(wave, rate, sample_rate=cfg.sample_rate, hop_length=cfg.mel_hop_length,
                  mel_bins=cfg.mel_bins, channels=cfg.in_channels)
    latents = vae.encode(mel.to(device, vae.dtype)).latent_dist.mode()
    length = round(seconds * latents_per_second(pipe))
    if latents.shape[2] < length:
        latents = torch.cat([latents, latents[:, :, -1:].expand(-1, -1, length - latents.shape[2], -1)], dim=2)
    return latents[:, :, :length]


def track_for_mux(pipe, wave: np.ndarray, rate: int, seconds: float, sample_rate: int) -> np.ndarray:
    """The track at the model's output rate and channel layout (stereo for LTX-2), ``seconds`` long,
    so every mp4 looks alike whether its sound was generated or given."""
    channels = int(getattr(pipe.vocoder.config, "out_channels", 2))
    return fit_length(with_channels(resample(wave, rate, sample_rate), channels), round(seconds * sample_rate))
