"""retake: generate a time span of a video again and keep the rest, as the official
``RetakePipeline`` (ltx-pipelines ``retake.py``) does.

The official pipeline encodes the whole source video (and its sound), marks every token whose
time lies in ``[start_s, end_s)`` to be denoised (``TemporalRegionMask``: a latent frame's
pixel span, over fps, overlapping the range; audio latents by their own seconds) and keeps the
others clean at timestep 0. Here the same in diffusers' ``LTX2Pipeline`` loop, by hooks on its
transformer (diffusers has no region mask): every call gets the source's clean tokens outside
the span at timestep 0 and answers zero velocity there, so the span is generated in the
context of the kept frames and sound on both sides (the sound's span is the latents whose own
seconds overlap the range, 40 ms each). After denoising the kept latents are the
source's, so the VAE decodes the span against its real neighbours; then the output keeps the
source's own decoded frames and sound outside the span (no second VAE round trip), the sound
cross-faded over a few milliseconds at each join.

What differs from the official: one stage on ltx-ray's recipe for the loaded profile (the
official runs distilled sigmas or the dev guider, as here); a source without sound has its
whole track generated, as the official leaves an absent audio latent unmasked.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ltx_ray.engine.conditioning import transformer_hooks
from ltx_ray.engine.tracks import encode_track, latents_per_second, track_for_mux
from ltx_ray.schema.job import Job

JOIN_FADE_S = 0.01  # sound cross-fade at each join: no click, no audible blend


@dataclass
class RetakeSpan:
    """Which latents are generated again, and the source they are kept from elsewhere."""

    video: torch.Tensor  # [latent frames] bool: generate again
    audio: torch.Tensor | None  # [audio latent frames] bool, None: no source sound (all generated)
    first_frame: int  # output frames [first_frame, end_frame) come from the model
    end_frame: int
    source_latents: torch.Tensor  # raw VAE latents of the source [1, C, F, H, W]
    source_audio: torch.Tensor | None  # raw audio-VAE latents [1, C, L, M]
    audio_seconds: tuple[float, float] | None = None  # the seconds the generated audio latents cover

    def record(self, job: Job) -> dict:
        return {"start_s": job.retake.start_s, "end_s": job.retake.end_s, "frames": [self.first_frame, self.end_frame],
                "seconds": [round(self.first_frame / job.fps, 4), round(self.end_frame / job.fps, 4)],
                "audio_seconds": [round(x, 4) for x in self.audio_seconds] if self.audio_seconds else "the whole track "
                "(the source has no sound)"}


def prepare(pipe, job: Job, inputs, placement) -> RetakeSpan:
    """Encode the source and mark the span: video latent frames and audio latent frames whose
    seconds overlap ``[start_s, end_s)`` (``TemporalRegionMask.apply_to``)."""
    start, end = job.retake.start_s, job.retake.end_s
    video = torch.tensor(job.retake.latent_frames(job.num_frames, job.fps))
    first_frame, end_frame = job.retake.frames(job.num_frames, job.fps)
    pixels = pipe.video_processor.preprocess_video(inputs.video, height=job.height, width=job.width)
    source = pipe.vae.encode(pixels.to(placement.input_device("vae"), pipe.vae.dtype)).latent_dist.mode()
    audio = source_audio = seconds = None
    if job.audio and inputs.audio is not None:
        source_audio = encode_track(pipe, inputs.audio, inputs.audio_rate, job.duration_s, placement.input_device("audio_vae"))
        rate = latents_per_second(pipe)
        audio = torch.tensor([j / rate < end and (j + 1) / rate > start for j in range(source_audio.shape[2])])
        picked = audio.nonzero().flatten().tolist()
        seconds = (picked[0] / rate, (picked[-1] + 1) / rate)
    return RetakeSpan(video=video, audio=audio, first_frame=first_frame, end_frame=end_frame,
                      source_latents=source, source_audio=source_audio, audio_seconds=seconds)


@contextmanager
def span_held(pipe, span: RetakeSpan):
    """Every transformer call: the source's clean tokens outside the span at timestep 0, and
    zero velocity for them, which diffusers' loop turns into no change (as ``audio_held``)."""
    tokens_per_frame = span.source_latents.shape[3] * span.source_latents.shape[4]
    video_keep = (~span.video).repeat_interleave(tokens_per_frame)  # packed order: frame, row, column
    video_clean = pipe._pack_latents(pipe._normalize_latents(
        span.source_latents, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor))
    audio_keep = audio_clean = None
    if span.audio is not None:
        audio_keep = ~span.audio
        audio_clean = pipe._normalize_audio_latents(pipe._pack_audio_latents(span.source_audio),
                                                    pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std)

    def held(tokens, keep, clean, timestep):
        keep = keep.to(tokens.device)
        tokens = torch.where(keep[None, :, None], clean.to(tokens.device, tokens.dtype), tokens)
        per_token = timestep[:, None].expand(-1, keep.numel()) if timestep.ndim == 1 else timestep
        return tokens, per_token.masked_fill(keep[None], 0)

    def before(_module, args, kwargs):
        timestep = kwargs["timestep"]
        audio_timestep = kwargs.get("audio_timestep")
        kwargs["hidden_states"], kwargs["timestep"] = held(kwargs["hidden_states"], video_keep, video_clean, timestep)
        audio_timestep = timestep if audio_timestep is None else audio_timestep  # the video's is per token now
        if audio_keep is not None:
            kwargs["audio_hidden_states"], audio_timestep = held(kwargs["audio_hidden_states"], audio_keep, audio_clean,
                                                                 audio_timestep)
        kwargs["audio_timestep"] = audio_timestep
        return args, kwargs

    def after(_module, _args, _kwargs, output):
        video, audio = output
        video = video.masked_fill(video_keep.to(video.device)[None, :, None], 0)
        if audio_keep is not None:
            audio = audio.masked_fill(audio_keep.to(audio.device)[None, :, None], 0)
        return video, audio

    with transformer_hooks(pipe.transformer, before, after):
        yield


def keep_source_latents(span: RetakeSpan, video: torch.Tensor, audio: torch.Tensor):
    """The denoised latents with the source's own outside the span, for the decoders."""
    keep = (~span.video).to(video.device)
    video[:, :, keep] = span.source_latents.to(video.device, video.dtype)[:, :, keep]
    if span.audio is not None:
        keep = (~span.audio).to(audio.device)
        audio[:, :, keep] = span.source_audio.to(audio.device, audio.dtype)[:, :, keep]
    return video, audio


def compose(span: RetakeSpan, job: Job, inputs, frames: np.ndarray, audio: np.ndarray | None, pipe, sample_rate: int):
    """The output: the source's decoded frames and sound, the model's inside the span."""
    out = np.stack([np.asarray(img.convert("RGB")) for img in inputs.video])
    out[span.first_frame : span.end_frame] = frames[span.first_frame : span.end_frame]
    if audio is None or span.audio is None:
        return out, audio
    source = track_for_mux(pipe, inputs.audio, inputs.audio_rate, job.duration_s, sample_rate)
    generated = audio[:, : source.shape[1]]
    total = source.shape[1]
    a, b = round(span.audio_seconds[0] * sample_rate), min(total, round(span.audio_seconds[1] * sample_rate))
    weight = np.zeros(total, np.float32)  # 1 where the model's sound is heard
    weight[a:b] = 1.0
    fade = min(round(JOIN_FADE_S * sample_rate), (b - a) // 2)
    ramp = (np.arange(fade, dtype=np.float32) + 0.5) / max(fade, 1)
    if a > 0 and fade:
        weight[a : a + fade] = ramp
    if b < total and fade:
        weight[b - fade : b] = ramp[::-1]
    mixed = source.copy()
    n = generated.shape[1]
    mixed[:, :n] = source[:, :n] * (1 - weight[:n]) + generated * weight[:n]
    return out, mixed.astype(np.float32)
