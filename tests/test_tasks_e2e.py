"""Every LTX-2 task end to end: one run through real Ray Data, the real pipelines on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.storage.manifest import write_manifest
from ltx_ray.storage.mux import decode_frames, probe, write_mp4

SMALL = {"width": 256, "height": 160, "num_frames": 17}
RATE = 24000


def write_wav(path: Path, wave: np.ndarray, rate: int) -> Path:
    """A 16-bit PCM wav written with PyAV."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono" if wave.shape[0] == 1 else "stereo")
        frame = av.AudioFrame.from_ndarray(
            (np.clip(wave, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1).copy(), format="s16",
            layout="mono" if wave.shape[0] == 1 else "stereo",
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_audio(path: Path) -> np.ndarray:
    """The mp4's audio as float mono-per-channel [C, S], as a player hears it."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="fltp", rate=RATE)
        chunks = [o.to_ndarray() for f in container.decode(audio=0) for o in resampler.resample(f)]
    return np.concatenate(chunks, axis=1)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4096) -> float:
    """Peak normalised correlation over small lags (AAC adds a priming delay)."""
    n = min(len(a), len(b)) - max_lag
    best = 0.0
    for lag in range(0, max_lag, 8):
        x, y = a[lag : lag + n], b[:n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
        x, y = a[:n], b[lag : lag + n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
    return best


def sweep(seconds: float, rate: int) -> np.ndarray:
    """A rising tone with a beat: nothing else sounds like it."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))[None].astype(np.float32)


@pytest.fixture(scope="module")
def tasks_run(ray_local, tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tasks")
    # A 25-frame source clip: a bar moving right, with a 440 Hz tone.
    frames = np.full((25, 160, 256, 3), 30, np.uint8)
    for i in range(25):
        frames[i, 40:120, 8 * i : 8 * i + 40] = (220, 180, 40)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(round(25 / 24 * RATE)) / RATE)
    write_mp4(tmp / "clip.mp4", frames, 24.0, np.stack([tone, tone]).astype(np.float32), RATE)
    write_wav(tmp / "voice.wav", sweep(1.5, 44100), 44100)
    loras = Path(tiny_model.path) / "loras"
    rows = [
        {"job_id": "t2v", "prompt": "a lamp", **SMALL, "seed": 3},
        {"job_id": "v2v", "prompt": "a lamp", "video_uri": str(tmp / "clip.mp4"), "strength": 0.7, **SMALL, "seed": 3},
        {"job_id": "extend", "prompt": "the bar keeps moving", "task": "extend", "video_uri": str(tmp / "clip.mp4"), **SMALL},
        {"job_id": "a2v", "prompt": "a singer", "audio_uri": str(tmp / "voice.wav"), "width": 256, "height": 160},
        {"job_id": "depth", "prompt": "a lamp", "control": "depth", "control_uri": str(tmp / "clip.mp4"),
         "ic_lora": str(loras / "ic-depth.safetensors"), **SMALL, "seed": 3},
        # Frames 9.6-14.4 of the clip again; the span widens to latent frame 2 (frames 9-16).
        {"job_id": "retake", "prompt": "the bar turns red", "video_uri": str(tmp / "clip.mp4"), "start_s": 0.4,
         "end_s": 0.6, "qc": "{}"},
        {"job_id": "lora", "prompt": "a lamp", "loras": [{"uri": str(loras / "style.safetensors"), "scale": 0.8}], **SMALL, "seed": 3},
        {"job_id": "pro", "prompt": "a lamp", "preset": "pro", "width": 256, "height": 192, "num_frames": 17},
        {"job_id": "long", "prompt": "a lamp", "width": 256, "height": 160, "num_frames": 49, "segment_frames": 25},
        {"job_id": "silent-pro", "prompt": "a lamp", "preset": "pro", "width": 256, "height": 192, "num_frames": 9, "audio": False},
        {"job_id": "no-ic-lora", "prompt": "p", "control": "pose", "control_uri": str(tmp / "clip.mp4"), **SMALL},
        {"job_id": "audio-missing", "prompt": "p", "audio_uri": str(tmp / "nope.wav"), **SMALL},
    ]
    write_manifest(rows, str(tmp / "m.parquet"))
    out = tmp / "out"
    summary = run(RunConfig(manifests=[str(tmp / "m.parquet")], out=str(out)), log=lambda *_: None)
    results = {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}
    return summary, out, results, tmp


def sidecar(out: Path, job_id: str) -> dict:
    return json.loads((out / f"{job_id}.json").read_text())


def test_every_task_row_succeeds_and_bad_rows_name_their_field(tasks_run):
    summary, _, results, _ = tasks_run
    failed = {k: r["error"] for k, r in results.items() if r["status"] != "succeeded"}
    assert set(failed) == {"no-ic-lora", "audio-missing"}, failed
    assert "ic_lora" in failed["no-ic-lora"] and "audio_uri" in failed["audio-missing"]
    assert (summary.invalid, summary.failed) == (1, 1)
    assert {results[k]["task"] for k in results if k not in failed} >= {"t2v", "v2v", "extend", "a2v", "control"}


def test_v2v_control_and_lora_rows_change_the_video_of_the_same_seed(tasks_run):
    _, out, _, _ = tasks_run
    base = decode_frames(out / "t2v.mp4").astype(int)
    for job_id in ("v2v", "depth", "lora"):
        other = decode_frames(out / f"{job_id}.mp4").astype(int)
        assert other.shape == base.shape == (17, 160, 256, 3)
        assert np.abs(other - base).mean() > 1.0, job_id
    assert sidecar(out, "depth")["generation"]["loras"][0]["uri"].endswith("ic-depth.safetensors")
    assert sidecar(out, "lora")["generation"]["loras"] == [{"uri": sidecar(out, "lora")["job"]["loras"][0]["uri"], "scale": 0.8}]


def test_extend_keeps_the_source_clip_and_continues_it_with_sound(tasks_run):
    _, out, _, tmp = tasks_run
    p = probe(out / "extend.mp4")
    assert p.num_frames == 25 + 17 - 9 and p.audio_codec == "aac"
    assert abs(p.audio_duration_s - 33 / 24) < 1 / 24
    got, source = decode_frames(out / "extend.mp4").astype(int), decode_frames(tmp / "clip.mp4").astype(int)
    assert np.abs(got[:25] - source).mean() < 3  # the clip itself, re-encoded once
    audio = decode_audio(out / "extend.mp4")[0]
    tone = np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)
    assert best_correlation(audio[: RATE // 2], tone, max_lag=2400) > 0.9  # the clip's own sound first


def test_a_retake_keeps_the_source_outside_its_span_and_passes_qc_at_the_joins(tasks_run):
    _, out, results, tmp = tasks_run
    assert results["retake"]["task"] == "retake" and results["retake"]["num_frames"] == 25  # the source's length
    p = probe(out / "retake.mp4")
    assert (p.width, p.height, p.num_frames, p.audio_codec) == (256, 160, 25, "aac")
    side = sidecar(out, "retake")
    assert side["generation"]["retake"]["frames"] == [9, 17]  # covers the asked frames 9.6-14.4
    got, source = decode_frames(out / "retake.mp4").astype(int), decode_frames(tmp / "clip.mp4").astype(int)
    kept = list(range(9)) + list(range(17, 25))
    assert np.abs(got[kept] - source[kept]).mean() < 3  # the source's frames, re-encoded once
    assert np.abs(got[9:17] - source[9:17]).mean() > 10  # the span, generated again
    checks = side["qc"]["attempts"][0]["checks"]
    assert side["qc"]["passed"] and checks["keyframe@8"]["pass"] and checks["keyframe@17"]["pass"]
    heard = decode_audio(out / "retake.mp4")[0]
    tone = np.sin(2 * np.pi * 440 * np.arange(RATE // 4) / RATE)
    assert best_correlation(heard[: RATE // 4], tone, max_lag=2400) > 0.9  # the source's sound before the span


def test_a2v_output_carries_the_given_audio_and_takes_its_length(tasks_run):
    _, out, results, _ = tasks_run
    p = probe(out / "a2v.mp4")
    assert p.num_frames == 33  # 1.5 s of audio at 24 fps, never longer than the audio
    assert abs(p.audio_duration_s - 33 / 24) < 1 / 24
    import torch
    import torchaudio.functional as AF

    given = AF.resample(torch.from_numpy(sweep(1.5, 44100)[0]), 44100, RATE).numpy()
    heard = decode_audio(out / "a2v.mp4")
    assert heard.shape[0] == 2
    assert best_correlation(heard[0], given) > 0.95


def test_pro_preset_runs_two_stages_and_audio_false_writes_a_video_only_mp4(tasks_run):
    _, out, _, _ = tasks_run
    gen = sidecar(out, "pro")["generation"]
    assert [s["stage"] for s in gen["stages"]] == [1, 2] and gen["refine_tiles"] == 1
    assert gen["distilled_lora"] == "distilled.safetensors" and gen["stages"][1]["lora"] == "distilled.safetensors"
    assert gen["stages"][1]["sigmas"] == [0.909375, 0.725, 0.421875]  # the official stage-2 schedule, unshifted
    assert gen["stages"][1]["transformer_passes_per_step"] == 1
    assert sidecar(out, "pro")["model"]["attention"] == "native"  # the kernel --attention picked
    job = sidecar(out, "pro")["job"]
    assert (job["width"], job["height"], job["fps"], job["two_stage"]) == (256, 192, 24.0, True)
    assert probe(out / "pro.mp4").width == 256
    silent = probe(out / "silent-pro.mp4")
    assert silent.audio_codec is None and silent.num_frames == 9


def test_a_long_video_is_chained_segments_with_continuous_audio(tasks_run):
    _, out, _, _ = tasks_run
    p = probe(out / "long.mp4")
    assert p.num_frames == 49 and abs(p.audio_duration_s - 49 / 24) < 1 / 24
    segments = sidecar(out, "long")["generation"]["segments"]
    assert [(s["start_frame"], s["num_frames"]) for s in segments] == [(0, 25), (16, 25), (32, 17)]
    audio = decode_audio(out / "long.mp4")[0]
    step = np.abs(np.diff(audio))
    window = RATE // 50  # 20 ms
    joins = [round(f / 24 * RATE) for f in (16, 25, 32, 41)]  # both ends of each cross-fade
    rms = np.sqrt(np.mean(audio**2))
    for j in joins:
        around = audio[j - window : j + window]
        assert np.sqrt(np.mean(around**2)) > 0.2 * rms, f"gap at sample {j}"
        assert step[j - window : j + window].max() <= 1.5 * np.percentile(step, 99.9), f"click at sample {j}"
