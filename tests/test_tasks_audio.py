"""Audio joins and a2v features, on plain signals (no model)."""

from __future__ import annotations

import numpy as np

from ltx_ray.engine.audio import crossfade_join, log_mel

RATE = 24000


def tone(freq: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t + phase))[None].astype(np.float32)


def test_a_join_of_two_slices_of_one_track_is_that_track():
    track = tone(330, 2.0)
    overlap = RATE // 4
    head, tail = track[:, : RATE + overlap], track[:, RATE:]
    joined = crossfade_join(head, tail, overlap)
    assert joined.shape == track.shape
    assert np.abs(joined - track).max() < 1e-4


def test_a_join_of_unrelated_sounds_keeps_its_level_and_has_no_jump():
    a, b = tone(220, 1.0), tone(517, 1.0, phase=1.3)
    overlap = RATE // 4
    joined = crossfade_join(a, b, overlap)[0]
    assert len(joined) == 2 * RATE - overlap
    step = np.abs(np.diff(joined))
    assert step.max() <= 1.2 * max(np.abs(np.diff(a[0])).max(), np.abs(np.diff(b[0])).max())
    span = joined[RATE - overlap : RATE]
    assert np.sqrt(np.mean(span**2)) > 0.7 * np.sqrt(np.mean(a**2))  # no dip, no gap
    hard_cut = np.concatenate([a[0], b[0, overlap:]])
    assert np.abs(np.diff(hard_cut)).max() > step.max()  # what the fade avoids


def test_log_mel_features_have_ltx2s_layout_and_rate():
    wave = np.concatenate([tone(440, 2.0), tone(880, 2.0)])
    mel = log_mel(wave, RATE, sample_rate=16000, hop_length=160, mel_bins=64, channels=2)
    assert tuple(mel.shape) == (1, 2, 201, 64)  # 100 frames per second at hop 160, centre-padded
    assert float(mel.min()) >= np.log(1e-5) - 1e-6
    assert int(mel[0, 0].mean(0).argmax()) < int(mel[0, 1].mean(0).argmax())  # 440 Hz below 880 Hz
