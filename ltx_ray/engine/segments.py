"""Long videos and extensions as chains of segments, joined into one clip.

A segment is one model pass (``LTX2Engine.generate_segment``). Each segment after the
first starts with the last ``SEGMENT_OVERLAP_FRAMES`` frames of what came before, given as
a fixed video condition, so motion and content carry across the join. Those re-created
frames are dropped from the video; the audio of the shared span is cross-faded
(engine.audio.crossfade_join), so the track runs on without a gap or a click. An a2v
chain slices the given track per segment, so its audio is the given track unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ltx_ray.engine.audio import crossfade_join, fit_length, resample
from ltx_ray.engine.types import Clip, JobInputs
from ltx_ray.schema.fields import SEGMENT_OVERLAP_FRAMES
from ltx_ray.schema.job import Job

GenerateSegment = Callable[[Job, JobInputs, Callable | None], Clip]


def plan_segments(total: int, longest: int, overlap: int = SEGMENT_OVERLAP_FRAMES) -> list[tuple[int, int]]:
    """(first output frame, frame count) of each segment; every count is 8k + 1 and <= ``longest``.

    The last segment may run past ``total``; the join trims the surplus.
    """
    plan = [(0, min(total, longest))]
    while plan[-1][0] + plan[-1][1] < total:
        start = plan[-1][0] + plan[-1][1] - overlap
        need = total - start
        length = min(longest, max(overlap + 8, (need - 1 + 7) // 8 * 8 + 1))
        plan.append((start, length))
    return plan


def generate_long(generate_segment: GenerateSegment, job: Job, inputs: JobInputs, sample_rate: int) -> Clip:
    """A video longer than one segment: chained segments joined into one clip of ``job.num_frames``.

    Frames are written once into one array of the final size, allocated when the first
    segment gives the frame size: peak memory is that array plus one segment, where
    concatenating per segment copied everything so far each time (a 60 s 4K chain: tens of GB).
    """
    frames: np.ndarray | None = None
    filled = 0
    audio: np.ndarray | None = None
    infos = []
    for k, (start, length) in enumerate(plan_segments(job.num_frames, job.segment_frames)):
        seg_job = job.model_copy(update={"num_frames": length, "seed": job.seed + k, "segment_frames": length})
        seg_inputs = JobInputs(
            image=inputs.image if k == 0 else None,
            prefix=_images(frames[filled - SEGMENT_OVERLAP_FRAMES : filled]) if k else None,
        )
        if inputs.audio is not None:  # a2v: this segment's slice of the given track
            first = round(start / job.fps * inputs.audio_rate)
            seg_inputs.audio = fit_length(inputs.audio[:, first:], round(length / job.fps * inputs.audio_rate))
            seg_inputs.audio_rate = inputs.audio_rate
        clip = generate_segment(seg_job, seg_inputs, None)
        infos.append({"start_frame": start, "num_frames": length, **clip.info})
        overlap = 0 if k == 0 else SEGMENT_OVERLAP_FRAMES
        if frames is None:
            frames = np.empty((job.num_frames, *clip.frames.shape[1:]), dtype=clip.frames.dtype)
        new = clip.frames[overlap : overlap + job.num_frames - filled]  # the last segment may run past the end
        frames[filled : filled + len(new)] = new
        audio = _join_audio(audio, filled, clip, overlap, job.fps, sample_rate) if k else clip.audio
        filled += len(new)
        del clip, new
    return Clip(
        frames=frames,
        fps=job.fps,
        audio=audio,
        sample_rate=sample_rate if audio is not None else None,
        info={"segments": infos},
    )


def extend_clip(generate_segment: GenerateSegment, job: Job, inputs: JobInputs, sample_rate: int) -> Clip:
    """The given clip followed by its continuation: one segment of ``job.num_frames`` whose first
    ``SEGMENT_OVERLAP_FRAMES`` frames re-create the clip's last ones (the output gains
    ``num_frames - SEGMENT_OVERLAP_FRAMES`` frames)."""
    source = np.stack([np.asarray(img) for img in inputs.video])
    source_audio = None
    if job.audio:
        seconds = len(source) / job.fps
        if inputs.audio is not None:
            source_audio = fit_length(resample(inputs.audio, inputs.audio_rate, sample_rate), round(seconds * sample_rate))
            if source_audio.shape[0] == 1:
                source_audio = np.repeat(source_audio, 2, axis=0)
        else:
            source_audio = np.zeros((2, round(seconds * sample_rate)), dtype=np.float32)  # a silent clip stays silent
    seg_job = job.model_copy(update={"task": "t2v"})
    clip = generate_segment(seg_job, JobInputs(prefix=list(inputs.video[-SEGMENT_OVERLAP_FRAMES:])), None)
    base = Clip(frames=source, fps=job.fps, audio=source_audio, sample_rate=sample_rate if job.audio else None)
    frames, audio = _append(base.frames, base.audio, clip, SEGMENT_OVERLAP_FRAMES, job.fps, sample_rate)
    return Clip(
        frames=frames,
        fps=job.fps,
        audio=audio,
        sample_rate=sample_rate if audio is not None else None,
        info={"source_frames": len(source), "segments": [clip.info]},
    )


def _append(frames, audio, clip: Clip, overlap: int, fps: float, sample_rate: int):
    """Add ``clip`` after what is there; its first ``overlap`` frames repeat the last ones."""
    joined = np.concatenate([frames, clip.frames[overlap:]], axis=0)
    return joined, _join_audio(audio, len(frames), clip, overlap, fps, sample_rate)


def _join_audio(audio, frames_before: int, clip: Clip, overlap: int, fps: float, sample_rate: int):
    """The track so far (under ``frames_before`` frames) cross-faded into ``clip``'s, which
    starts ``overlap`` frames before the end of what is there."""
    if audio is None or clip.audio is None:
        return None
    # Each side's audio is cut to its own frames, so the shared span is the same moment.
    head = fit_length(audio, round(frames_before / fps * sample_rate))
    tail = fit_length(clip.audio, round(len(clip.frames) / fps * sample_rate))
    return crossfade_join(head, tail, round(overlap / fps * sample_rate))


def _images(frames: np.ndarray) -> list:
    from PIL import Image

    return [Image.fromarray(f) for f in frames]
