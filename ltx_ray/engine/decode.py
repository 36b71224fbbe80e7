"""Latents -> frames and waveform: the conv VAE, or LTX-2.5's diffusion decoder (touches diffusers).

Both video paths end as uint8 frames [F, H, W, 3]. The diffusion decoder (diffusers 0.42.1
``LTX2VideoDiffusionDecodePipeline``) is itself a small diffusion model that samples noise, so
it is seeded from the job (``seed + 2``: stage 1 draws from ``seed``, stage 2 from ``seed + 1``)
and loaded on first use, once per engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ltx_ray.schema.model_files import DIFFUSION_DECODER


class Decoders:
    """The video decoders of one loaded model."""

    def __init__(self, base, root: Path, device: torch.device, dtype: torch.dtype):
        self.base = base
        self.folder = root / DIFFUSION_DECODER
        self.device = device
        self.dtype = dtype
        self._diffusion = None

    @property
    def has_diffusion(self) -> bool:
        return (self.folder / "config.json").is_file()

    def video(self, pipe, latents: torch.Tensor, decoder: str, seed: int) -> np.ndarray:
        """Decode denormalised video latents [B, C, F, H, W] to uint8 frames."""
        if decoder == "diffusion":
            out = self._diffusion_pipe()(latents=latents, denormalize=False, output_type="np",
                                         generator=torch.Generator("cpu").manual_seed(seed + 2))
            return _to_uint8(out.frames[0])
        # The decode branch of diffusers 0.42 ``LTX2Pipeline.__call__`` with its default
        # ``decode_timestep`` 0 (no decode noise).
        timestep = None
        if pipe.vae.config.timestep_conditioning:
            timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
        video = pipe.vae.decode(latents.to(pipe.vae.dtype), timestep, return_dict=False)[0]
        return _to_uint8(pipe.video_processor.postprocess_video(video, output_type="np")[0])

    @staticmethod
    def audio(pipe, audio_latents: torch.Tensor) -> np.ndarray:
        """Audio VAE + vocoder, as the end of ``LTX2Pipeline.__call__``: float waveform [C, S]."""
        mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
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


def _to_uint8(video: np.ndarray) -> np.ndarray:
    return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
