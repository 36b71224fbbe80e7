"""retake on the engine: the span is generated again in the context of the kept source, and
outside it the output is the source's own decoded frames and sound (the official RetakePipeline).

The source is a clip the tiny model made, written to an mp4 and read back the way a job reads
its video_uri, so "the source's frames" are exactly the frames PyAV decodes from that file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltx_ray.engine.tracks import track_for_mux
from ltx_ray.engine.types import JobInputs
from ltx_ray.errors import InputError
from ltx_ray.job.inputs import fetch_inputs, resolve_from_inputs
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.storage.mux import write_mp4

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def source(engine, tmp_path_factory):
    """A 33-frame 256x160 clip with sound, as an mp4."""
    path = tmp_path_factory.mktemp("retake") / "source.mp4"
    job = ManifestRow(job_id="src", prompt="a lamp on a desk", width=256, height=160, num_frames=33, seed=1).resolve(engine.profile)
    clip = engine.generate(job, JobInputs())
    write_mp4(path, clip.frames, clip.fps, clip.audio, clip.sample_rate)
    return str(path)


def retake_job(engine, source, **row):
    job = ManifestRow(job_id="re", prompt="a red lamp on a desk", video_uri=source, seed=5, **row).resolve(engine.profile)
    inputs = fetch_inputs(job)
    return resolve_from_inputs(job, inputs), inputs


def test_a_retake_generates_its_span_again_and_keeps_the_sources_own_frames_and_sound_elsewhere(engine, source):
    job, inputs = retake_job(engine, source, start_s=0.5, end_s=0.9)
    assert (job.width, job.height, job.num_frames, job.fps) == (256, 160, 33, 24.0)  # the source's
    clip = engine.generate(job, inputs)
    # 0.5-0.9 s is frames 12-21.6: latent frames 2 and 3 (frames 9-24) hold it.
    assert clip.info["retake"]["frames"] == [9, 25]
    given = np.stack([np.asarray(img) for img in inputs.video])
    assert clip.frames.shape == given.shape
    assert np.array_equal(clip.frames[:9], given[:9]) and np.array_equal(clip.frames[25:], given[25:])  # copied
    assert np.abs(clip.frames[9:25].astype(int) - given[9:25]).mean() > 10  # generated again
    # The sound: the source's track (at the output rate) outside the span, up to the 10 ms fades.
    kept = track_for_mux(engine._pipes["t2v"], inputs.audio, inputs.audio_rate, job.duration_s, clip.sample_rate)
    rate = clip.sample_rate
    assert clip.info["retake"]["audio_seconds"] == [0.48, 0.92]  # audio latents (25 a second) over 0.5-0.9 s
    a, b = round(0.48 * rate), round(0.92 * rate)
    assert clip.audio.shape == kept.shape
    assert np.array_equal(clip.audio[:, :a], kept[:, :a]) and np.array_equal(clip.audio[:, b:], kept[:, b:])
    fade = round(0.01 * rate)
    assert np.abs(clip.audio[:, a + fade : b - fade] - kept[:, a + fade : b - fade]).mean() > 1e-3


def test_every_transformer_call_sees_the_source_outside_the_span_clean_at_timestep_0(engine, source):
    job, inputs = retake_job(engine, source, start_s=0.5, end_s=0.9)
    pipe = engine._pipes["t2v"]
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append({k: kw[k].clone() for k in ("hidden_states", "timestep", "audio_hidden_states",
                                                                    "audio_timestep")}), with_kwargs=True)
    try:
        engine.generate(job, inputs)
    finally:
        handle.remove()
    assert len(calls) >= job.steps  # every step, with its guidance passes (CFG batched in one call)
    with torch.no_grad():
        pixels = pipe.video_processor.preprocess_video(inputs.video, height=160, width=256)
        clean = pipe._pack_latents(pipe._normalize_latents(
            pipe.vae.encode(pixels).latent_dist.mode(), pipe.vae.latents_mean, pipe.vae.latents_std,
            pipe.vae.config.scaling_factor))[0]
    per_frame = 5 * 8  # tokens per latent frame at 256x160
    kept = torch.ones(5, dtype=torch.bool)
    kept[2:4] = False  # latent frames 2 and 3 are generated again
    kept = kept.repeat_interleave(per_frame)
    for call in calls:
        for item, t in zip(call["hidden_states"], call["timestep"]):
            assert torch.allclose(item[kept], clean[kept], atol=1e-5)
            assert not t[kept].any() and (t[~kept] > 0).all()
        # The audio latents (25 a second) outside 0.48-0.92 s, over the asked 0.5-0.9 s, are held the same way.
        audio_kept = torch.tensor([not 12 <= j < 23 for j in range(call["audio_timestep"].shape[1])])
        assert not call["audio_timestep"][:, audio_kept].any() and (call["audio_timestep"][:, ~audio_kept] > 0).all()


@pytest.mark.parametrize("row, field, fragment", [
    ({"start_s": 0.5, "end_s": 3.0}, "end_s", "outside the 1.38 s source video; give 0 <= start_s < end_s <= 1.38"),
    ({"start_s": 1.5, "end_s": 2.0}, "start_s", "outside the 1.38 s source video"),
    ({"start_s": 0.5, "end_s": 0.9, "num_frames": 17}, "num_frames", "the source video has num_frames 33"),
    ({"start_s": 0.5, "end_s": 0.9, "width": 512}, "width", "leave width out or give 256"),
])
def test_a_retake_the_source_cannot_serve_is_a_row_error_naming_the_field_and_the_valid_values(engine, source, row, field, fragment):
    with pytest.raises(InputError, match=field) as info:
        retake_job(engine, source, **row)
    assert str(info.value).startswith(field) and fragment in str(info.value)


def test_a_source_without_sound_gets_a_whole_new_track_and_keeps_its_frames(engine, source, tmp_path):
    silent = tmp_path / "silent.mp4"
    frames = np.stack([np.asarray(img) for img in fetch_inputs(retake_job(engine, source, start_s=0.5, end_s=0.9)[0]).video])
    write_mp4(silent, frames, 24.0, None, None)
    job, inputs = retake_job(engine, str(silent), start_s=0.5, end_s=0.9)
    assert inputs.audio is None
    clip = engine.generate(job, inputs)
    given = np.stack([np.asarray(img) for img in inputs.video])
    assert np.array_equal(clip.frames[:9], given[:9]) and np.array_equal(clip.frames[25:], given[25:])
    assert clip.audio is not None and clip.audio.shape[1] > 0.9 * 33 / 24 * clip.sample_rate  # generated, as t2v
    assert clip.info["retake"]["audio_seconds"] == "the whole track (the source has no sound)"
