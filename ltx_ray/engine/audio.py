"""Audio arithmetic that is not the model: resampling, LTX-2's log-mel features, joins.

torchaudio does the signal processing (resampling, mel filter bank); nothing here touches
diffusers. Waveforms are float32 arrays ``[channels, samples]`` in -1..1.
"""

from __future__ import annotations

import numpy as np
import torch

# ltx-core's AudioProcessor for LTX-2 uses a 1024-point FFT at 16 kHz (ltx-core audio_vae/ops.py; docs/engine.md).
MEL_N_FFT = 1024


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave`` [C, S] at ``rate`` Hz, resampled to ``target`` Hz with torchaudio's windowed sinc."""
    if rate == target:
        return wave.astype(np.float32, copy=False)
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, target)
    return out.numpy()


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Cut or pad with silence to exactly ``samples``."""
    if wave.shape[1] >= samples:
        return wave[:, :samples]
    return np.concatenate([wave, np.zeros((wave.shape[0], samples - wave.shape[1]), dtype=wave.dtype)], axis=1)


def with_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """Mono is duplicated, extra channels dropped: the audio VAE has a fixed channel count."""
    if wave.shape[0] == channels:
        return wave
    if wave.shape[0] == 1:
        return np.repeat(wave, channels, axis=0)
    return wave[:channels]


def log_mel(wave: np.ndarray, rate: int, *, sample_rate: int, hop_length: int, mel_bins: int, channels: int) -> torch.Tensor:
    """LTX-2's audio-conditioning features: ``[1, channels, time, mel_bins]``.

    Exactly ltx-core ``audio_vae/ops.py``: resample to the VAE's rate (16 kHz), a magnitude
    (power 1) Slaney mel spectrogram, ``log(clamp(mel, 1e-5))``, laid out time-major.
    """
    import torchaudio

    wave = with_channels(resample(wave, rate, sample_rate), channels)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=MEL_N_FFT,
        win_length=MEL_N_FFT,
        hop_length=hop_length,
        f_min=0.0,
        f_max=sample_rate / 2.0,
        n_mels=mel_bins,
        window_fn=torch.hann_window,
        center=True,
        pad_mode="reflect",
        power=1.0,
        mel_scale="slaney",
        norm="slaney",
    )(torch.from_numpy(np.ascontiguousarray(wave)))
    return torch.log(torch.clamp(mel, min=1e-5)).transpose(1, 2).unsqueeze(0)  # [C, M, T] -> [1, C, T, M]


def crossfade_join(head: np.ndarray, tail: np.ndarray, overlap: int) -> np.ndarray:
    """Join two waveforms whose last / first ``overlap`` samples cover the same moment.

    Unrelated signals (two generated segments) get an equal-power (sine/cosine) fade, which
    holds the level; nearly identical ones (slices of one given track) a linear fade, which
    passes them unchanged. Neither side ends abruptly, so the join has no gap and no click.
    """
    overlap = min(overlap, head.shape[1], tail.shape[1])
    if overlap == 0:
        return np.concatenate([head, tail], axis=1)
    a, b = head[:, -overlap:], tail[:, :overlap]
    t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    correlation = float(np.sum(a * b) / (np.sqrt(np.sum(a * a) * np.sum(b * b)) + 1e-12))
    if correlation > 0.9:
        fade_in, fade_out = t, 1.0 - t
    else:
        fade_in, fade_out = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)
    mixed = (a * fade_out + b * fade_in).astype(head.dtype)
    return np.concatenate([head[:, :-overlap], mixed, tail[:, overlap:]], axis=1)
