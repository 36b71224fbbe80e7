"""Row checks that concern one task's columns (called from ``ManifestRow._consistent``).

Each raises ``ValueError("field: what is wrong; the fix")``, which validation reports with the
job, the field and the value.
"""

from __future__ import annotations

from typing import Any

from ltx_ray.schema.fields import DEFAULT_SEGMENT_FRAMES

# ``row`` is a ``ManifestRow`` (not imported: schema.manifest imports this module).
ManifestRow = Any


def check_keyframes(row: ManifestRow) -> None:
    """Keyframes distinct, in order, inside the video and in one segment."""
    if not row.keyframes:
        return
    frames = [k.frame for k in row.keyframes]
    total = row.resolved_num_frames()
    if len(set(frames)) != len(frames):
        raise ValueError(f"keyframes: frames {frames} repeat a frame; give each frame at most once")
    if frames != sorted(frames):
        raise ValueError(f"keyframes: frames {frames} are out of order; list keyframes by increasing frame")
    if max(frames) >= total:
        raise ValueError(f"keyframes: frame {max(frames)} is outside the video of {total} frames; "
                         f"use 0..{total - 1} or raise num_frames")
    if total > (row.segment_frames or DEFAULT_SEGMENT_FRAMES):
        raise ValueError("keyframes: keyframes place frames in one segment; shorten the video or raise segment_frames")


def check_retake(row: ManifestRow, task: str) -> None:
    """A retake names its range (start_s < end_s); no other task takes one. Whether the range
    lies inside the source video is known only once the video is read (a row error then)."""
    given = [name for name in ("start_s", "end_s") if getattr(row, name) is not None]
    if task != "retake":
        if given:
            raise ValueError(f"{given[0]}: applies to retake only (the seconds of video_uri to generate again); "
                             f"remove it from this {task} row, or set task to retake")
        return
    if len(given) < 2:
        missing = "end_s" if "start_s" in given else "start_s"
        raise ValueError(f"{missing}: a retake row needs start_s and end_s, the seconds of video_uri to generate "
                         "again, e.g. start_s 1.5, end_s 2.5")
    if row.end_s <= row.start_s:
        raise ValueError(f"end_s: {row.end_s:g} is not after start_s {row.start_s:g}; give start_s < end_s")
    if row.resolved_two_stage():
        raise ValueError("two_stage: a retake regenerates at the source video's own size in one stage; remove "
                         "two_stage and preset")
    if row.seconds is not None:
        raise ValueError("seconds: a retake is as long as its source video; remove seconds")


def check_auto_seconds(row: ManifestRow) -> None:
    """``seconds: auto`` on t2v / i2v only, its bounds with it and in order."""
    auto = row.seconds == "auto"
    for name in ("min_seconds", "max_seconds"):
        if getattr(row, name) is not None and not auto:
            raise ValueError(f"{name}: bounds the length the model picks, so it needs seconds 'auto'; remove it "
                             "or set seconds to auto")
    if not auto:
        return
    task = row.task or row.inferred_task()
    if task not in ("t2v", "i2v"):
        raise ValueError(f"seconds: 'auto' picks the length of a t2v or i2v video; this {task} job takes its length "
                         "from num_frames or seconds (or its input); give seconds as a number")
    bounds = row.auto_seconds()
    if bounds.min_seconds >= bounds.max_seconds:
        raise ValueError(f"min_seconds: {bounds.min_seconds:g} is not below max_seconds {bounds.max_seconds:g}; "
                         "give min_seconds < max_seconds")
