"""Latents -> frames and waveform: the conv VAE, or LTX-2.5's diffusion decoder (touches diffusers).

Both video paths end as uint8 frames [F, H, W, 3], made uint8 on the decoder's device: only
uint8 reaches the host. The conv VAE decodes in tiles (engine/vae_stream.py) that stream into
the frames when the clip is large (``tiling``): in space above 720p, as before, and in time
when the frames pass ``STREAM_FRAME_BYTES``, so memory stays near the frames' own bytes
(bench/memory.py ``--size``). The diffusion decoder (diffusers 0.42.1
``LTX2VideoDiffusionDecodePipeline``) is itself a small diffusion model that samples noise, so
it is seeded from the job (``seed + 2``: stage 1 draws from ``seed``, stage 2 from ``seed + 1``)
and loaded on first use, once per engine.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ltx_ray.engine.vae_stream import stream_decode
from ltx_ray.schema.job import Job
from ltx_ray.schema.model_files import DIFFUSION_DECODER

# Spatial VAE tiles above 720p: a 1080p or 4K clip decoded in one piece needs tens of GiB.
VAE_TILING_PIXELS = 1280 * 720
# Temporal tiles, streamed, when the uint8 frames pass this, by the VAE's device. Below it
# one decode call is faster (in tiles each latent frame is decoded about three times) and its
# float video fits: on a GPU in device memory up to 1 GiB of frames (1080p x 121 two-stage
# keeps its speed), on the CPU, where the VAE's activations are host memory, up to 256 MiB.
STREAM_FRAME_BYTES = {"cuda": 2**30, "cpu": 256 * 2**20}


class Decoders:
    """The video decoders of one loaded model."""

    def __init__(self, base, root: Path, placement, dtype: torch.dtype):
        self.base = base
        self.folder = root / DIFFUSION_DECODER
        self.placement = placement  # engine.placement.Placement: the decoders' inputs go to their cards
        self.dtype = dtype
        self._diffusion = None
        self.temporal = False  # set by ``tiling`` for one job

    @property
    def device(self) -> torch.device:
        """Where the VAE works (and the diffusion decoder, beside it)."""
        return torch.device(self.placement.input_device("vae"))

    @property
    def has_diffusion(self) -> bool:
        return (self.folder / "config.json").is_file()

    @contextmanager
    def tiling(self, job: Job):
        """How this job's clip is decoded (and encoded: i2v images, v2v videos): spatial tiles
        above 720p, temporal tiles streamed into the frames when they are large; for this job only.
        Yields what the sidecar records (``generation.vae_tiling``)."""
        vae = self.base.vae
        spatial = job.width * job.height > VAE_TILING_PIXELS
        self.temporal = job.num_frames * job.height * job.width * 3 > STREAM_FRAME_BYTES.get(self.device.type, 2**30)
        if spatial:
            vae.enable_tiling()
        try:
            yield "+".join(name for name, on in (("spatial", spatial), ("temporal", self.temporal)) if on) or False
        finally:
            self.temporal = False
            if spatial:
                vae.disable_tiling()

    def video(self, pipe, latents: torch.Tensor, decoder: str, seed: int) -> np.ndarray:
        """Decode denormalised video latents [1, C, F, H, W] to uint8 frames [F, H, W, 3]."""
        if decoder == "diffusion":
            out = self._diffusion_pipe()(latents=latents, denormalize=False, output_type="pt",
                                         generator=torch.Generator("cpu").manual_seed(seed + 2))
            video = out.frames[0]  # [F, C, H, W] in 0..1 on the decoder's device
            return (video * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        # The decode branch of diffusers 0.42 ``LTX2Pipeline.__call__`` with its default
        # ``decode_timestep`` 0 (no decode noise), in streamed tiles.
        vae = pipe.vae
        timestep = None
        if vae.config.timestep_conditioning:
            timestep = torch.zeros(latents.shape[0], device=self.device, dtype=vae.dtype)
        _, _, f, h, w = latents.shape
        frames = np.empty(((f - 1) * vae.temporal_compression_ratio + 1, h * vae.spatial_compression_ratio,
                           w * vae.spatial_compression_ratio, 3), dtype=np.uint8)
        hook = getattr(vae, "_hf_hook", None)  # what diffusers' ``apply_forward_hook`` does for ``decode``:
        if hook is not None and hasattr(hook, "pre_forward"):  # offloading brings the weights now
            hook.pre_forward(vae)
        stream_decode(vae, latents.to(self.device, vae.dtype), timestep, frames, temporal=self.temporal)
        return frames

    def audio(self, pipe, audio_latents: torch.Tensor) -> np.ndarray:
        """Audio VAE + vocoder, as the end of ``LTX2Pipeline.__call__``: float waveform [C, S]. The
        latents go to the audio VAE's card (``decode`` is not ``forward``: no hook moves them)."""
        latents = audio_latents.to(self.placement.input_device("audio_vae"), pipe.audio_vae.dtype)
        mel = pipe.audio_vae.decode(latents, return_dict=False)[0]
        return pipe.vocoder(mel)[0].float().cpu().numpy()

    def _diffusion_pipe(self):
        if self._diffusion is None:
            from diffusers import LTX2VideoDiffusionDecoderModel
            from diffusers.pipelines.ltx2 import LTX2VideoDiffusionDecodePipeline

            if not self.has_diffusion:
                from ltx_ray.errors import InputError

                raise InputError(f"decoder: 'diffusion' needs {DIFFUSION_DECODER}/ in the model folder (LTX-2.5 ships "
                                 f"it) and {self.folder} has none; set decoder to conv")
            model = LTX2VideoDiffusionDecoderModel.from_pretrained(self.folder, torch_dtype=self.dtype).to(self.device)
            self._diffusion = LTX2VideoDiffusionDecodePipeline(
                diffusion_decoder=model, scheduler=self.base.scheduler, vae=self.base.vae)
            self._diffusion.set_progress_bar_config(disable=True)
        return self._diffusion
