"""What goes into and comes out of an engine, without torch: any layer may import these.

``Engine`` is the interface ``ltx_ray.job.runner.JobRunner`` drives; ``LTX2Engine`` is the
real one, and benchmarks and fault tests pass stand-ins with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from ltx_ray.schema.job import Job


@dataclass
class Clip:
    """A generated video: uint8 frames [F, H, W, 3] and, when asked for, float audio [C, S]."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int | None
    info: dict = field(default_factory=dict)  # how it was made (stages, tiles, segments), for the sidecar


@dataclass
class JobInputs:
    """Decoded conditioning inputs of one job (fetched by ltx_ray.job.inputs)."""

    image: Image.Image | None = None
    keyframes: list[tuple[Image.Image, int, float]] | None = None
    video: list[Image.Image] | None = None  # v2v source / clip to extend (fitted to the output size) / retake source
    video_fps: float | None = None  # the source video's frame rate
    control: list[Image.Image] | None = None  # depth / pose / canny frames
    audio: np.ndarray | None = None  # a2v track, or the extended clip's sound: float [C, S]
    audio_rate: int | None = None
    prefix: list[Image.Image] | None = None  # frames this segment must start with (chains)


def latent_index(frame: int) -> int:
    """The latent frame holding output ``frame``: diffusers' condition index is a latent index.

    Latent 0 is output frame 0; latent L >= 1 covers output frames 8(L-1)+1 .. 8L. A keyframe
    still lands on its own frame: engine/conditioning.py gives its tokens that frame's time.
    """
    return 0 if frame == 0 else (frame - 1) // 8 + 1


def whole_latent_frames(frames: list) -> list:
    """The longest 8k + 1 prefix: a video condition must fill whole latent frames."""
    return frames[: (len(frames) - 1) // 8 * 8 + 1]


class Engine(Protocol):
    """A loaded model that turns a job and its decoded inputs into a clip."""

    placement: Any  # where its components live (an engine.placement.Placement), or None

    def generate(self, job: Job, inputs: JobInputs, on_step: Callable[[int, int], None] | None = None) -> Clip: ...
