"""The conv VAE's tiled decode, streamed: each piece becomes uint8 on the VAE's device and is
written straight into the clip's frames, so no full-length float video ever exists.

diffusers 0.42.1 ``AutoencoderKLLTX2Video`` decodes a long or large clip in tiles
(``_temporal_tiled_decode``: tiles of ``tile_sample_min_num_frames`` + 1 frames every
``tile_sample_stride_num_frames``; ``tiled_decode``: 512 px tiles every 448 px) and blends
their overlaps linearly, but it keeps every decoded tile until the end and concatenates them:
a float32 copy of the whole video (4x its uint8 bytes) plus the tiles (more again), then
``postprocess_video`` makes a float NumPy copy on the host. At 1920x1088x241 that is tens of
GiB of host memory for 1.5 GB of frames.

``stream_decode`` runs the same tiles in the same order with the same blends (the result is
the one diffusers gives with ``use_tiling`` and ``use_framewise_decoding`` on, to the bit:
tests/test_decode_stream.py), but keeps only what the next blend reads: the last
``blend`` frames of the previous temporal tile, the bottom ``blend`` rows of the previous row
of spatial tiles and the right ``blend`` columns of the previous tile. Every finished piece is
denormalised to uint8 on the device (the
arithmetic of ``postprocess_video`` + rounding) and copied to the host as uint8.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """VAE output [B, C, F, H, W] in -1..1 -> uint8 [B, F, H, W, C] on the same device: the
    arithmetic of diffusers' ``postprocess_video`` (``denormalize`` in the VAE's dtype, then
    float) followed by x 255, rounded, as ``Decoders`` did on the host."""
    video = (video * 0.5 + 0.5).clamp(0, 1).float()
    return (video * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 4, 1)


def _blend(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> None:
    """diffusers' ``blend_t`` / ``blend_v`` / ``blend_h``: the first ``extent`` slices of ``b``
    along ``dim`` faded in from the last ones of ``a``, in place."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    for x in range(extent):
        b.select(dim, x).copy_(a.select(dim, a.shape[dim] - extent + x) * (1 - x / extent) + b.select(dim, x) * (x / extent))


class _Strip:
    """One temporal tile (or the whole clip) in rows of spatial tiles: ``tiled_decode``, one
    tile at a time, keeping of each finished tile only the edges its neighbours blend with."""

    def __init__(self, vae, z: torch.Tensor, temb, causal):
        self.vae, self.z, self.temb, self.causal = vae, z, temb, causal
        ratio = vae.spatial_compression_ratio
        self.tile_h, self.tile_w = vae.tile_sample_min_height // ratio, vae.tile_sample_min_width // ratio
        self.step_h, self.step_w = vae.tile_sample_stride_height // ratio, vae.tile_sample_stride_width // ratio
        self.blend_h = vae.tile_sample_min_height - vae.tile_sample_stride_height
        self.blend_w = vae.tile_sample_min_width - vae.tile_sample_stride_width
        self.height, self.width = z.shape[3] * ratio, z.shape[4] * ratio

    def tiled(self) -> bool:
        return self.vae.use_tiling and (self.z.shape[-1] > self.tile_w or self.z.shape[-2] > self.tile_h)

    def pieces(self):
        """(top, left, piece [B, C, F, h, w]) of the decoded clip, in the order that diffusers blends."""
        if not self.tiled():
            yield 0, 0, self.vae.decoder(self.z, self.temb, causal=self.causal)
            return
        ratio = self.vae.spatial_compression_ratio
        stride_h, stride_w = self.vae.tile_sample_stride_height, self.vae.tile_sample_stride_width
        above: list[torch.Tensor] = []  # the previous row's tiles, their bottom rows only
        for i in range(0, self.z.shape[3], self.step_h):
            row, left = [], None
            for n, j in enumerate(range(0, self.z.shape[4], self.step_w)):
                tile = self.vae.decoder(self.z[:, :, :, i:i + self.tile_h, j:j + self.tile_w], self.temb, causal=self.causal)
                if above:
                    _blend(above[n], tile, self.blend_h, dim=3)
                if left is not None:
                    _blend(left, tile, self.blend_w, dim=4)
                left = tile[:, :, :, :, -self.blend_w:].clone()
                row.append(tile[:, :, :, -self.blend_h:].clone())
                top, start = i * ratio, j * ratio
                yield top, start, tile[:, :, :, :min(stride_h, self.height - top), :min(stride_w, self.width - start)]
                del tile
            above = row


def stream_decode(vae, z: torch.Tensor, temb: torch.Tensor | None, out: np.ndarray, *, temporal: bool,
                  causal=None) -> None:
    """Decode latents ``z`` [1, C, f, h, w] into ``out`` (uint8 [F, H, W, 3], F = (f - 1) x 8 + 1):
    in temporal tiles when ``temporal`` (diffusers' ``use_framewise_decoding``), each in rows of
    spatial tiles when ``vae.use_tiling`` is on and the latents are larger than one tile."""
    if not temporal:
        for top, left, piece in _Strip(vae, z, temb, causal).pieces():
            out[:, top:top + piece.shape[3], left:left + piece.shape[4]] = to_uint8(piece)[0].cpu().numpy()
            del piece
        return
    ratio_t = vae.temporal_compression_ratio
    tile_t = vae.tile_sample_min_num_frames // ratio_t
    step_t = vae.tile_sample_stride_num_frames // ratio_t
    stride = vae.tile_sample_stride_num_frames
    blend_t = vae.tile_sample_min_num_frames - stride
    total = out.shape[0]
    tail = None  # the previous temporal tile's last frames, [B, C, <=blend_t, H, W]
    start = 0  # first output frame of the current temporal tile
    for k, i in enumerate(range(0, z.shape[2], step_t)):
        new_tail = None
        for top, left, piece in _Strip(vae, z[:, :, i:i + tile_t + 1], temb, causal).pieces():
            h, w = piece.shape[3], piece.shape[4]
            if k > 0:
                piece = piece[:, :, :-1]
                _blend(tail[:, :, :, top:top + h, left:left + w], piece, blend_t, dim=2)
            frames = to_uint8(piece[:, :, :stride + (1 if k == 0 else 0)])[0]
            end = min(total, start + frames.shape[0])
            if end > start:
                out[start:end, top:top + h, left:left + w] = frames[: end - start].cpu().numpy()
            part = piece[:, :, -blend_t:]
            if new_tail is None:  # pieces do not overlap: each region of the tail is read, then
                same = tail is not None and tail.shape[2] == part.shape[2]  # overwritten in place
                new_tail = tail if same else part.new_empty(*part.shape[:3], out.shape[1], out.shape[2])
            new_tail[:, :, :, top:top + h, left:left + w] = part
            del piece, frames, part  # the tile goes before the next one is decoded
        tail = new_tail
        start += stride + (1 if k == 0 else 0)
        if start >= total:
            break
