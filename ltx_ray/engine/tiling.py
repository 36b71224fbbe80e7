"""Stage-2 refinement above the token cap: the transformer call is tiled, not the refinement.

Very large outputs (a 10 s 4K clip is ~250k video tokens at stage 2) cannot be refined in
one attention pass. The official tiled refinement (and diffusers 0.42.1's own tiled call in
``LTX2DFRPipeline``, ``pipeline_ltx2_dfr.py``) keeps ONE denoising loop over the whole
latent, with one noise tensor and the pipeline's own conditioning, and runs each transformer
call tile by tile: every tile takes its window of the base tokens plus the appended
conditioning tokens (keyframes) that fall inside it, and the tiles' velocities are blended
with trapezoid windows that sum to one across every overlap. So every step is blended, the
seams are feathered over the whole overlap, and the i2v first frame or a keyframe is held in
every tile that covers it.

What is diffusers' here: the tile windows (``dfr_layout.split_by_count``,
``trapezoidal_mask_1d``) and the token plan (``dfr_layout.video_tile_plan``: kept tokens,
their weights, their RoPE positions rebased on the tile). What is ours: choosing the tile
counts for a token budget, and wrapping ``transformer.forward`` for the plain LTX-2 pipelines
(their loops have no tiled call), copying the blend of ``LTX2DFRPipeline.__call__``'s tiled
branch (video velocity accumulated with ``index_add_``, the audio velocity averaged).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from diffusers.models.transformers.transformer_ltx2 import AudioVisualModelOutput
from diffusers.pipelines.ltx2.dfr_layout import LTX2DFREpilogueTile, split_by_count, trapezoidal_mask_1d, video_tile_plan

from ltx_ray.engine.conditioning import forward_replaced

# Latent cells neighbouring tiles share and feather across (128 px at 32x compression),
# fewer where a tile is small: a tile stays more than twice its overlap.
TILE_OVERLAP = 4


def tile_counts(frames: int, height: int, width: int, max_tokens: int) -> tuple[int, int, tuple[int, int]]:
    """(tiles down, tiles across, (overlap down, overlap across)) for a latent grid: the fewest
    tiles whose largest one holds at most ``max_tokens`` tokens, then the fewest cells."""
    best = None
    for down in range(1, height + 1):
        for across in range(1, width + 1):
            overlaps = (_overlap(height, down), _overlap(width, across))
            th, tw = _tile_size(height, down, overlaps[0]), _tile_size(width, across, overlaps[1])
            if frames * th * tw > max_tokens:
                continue
            cost = (down * across, down * across * th * tw)
            if best is None or cost < best[0]:
                best = (cost, down, across, overlaps)
    if best is None:  # one latent column per tile is still too many tokens: the most tiles there are
        return height, width, (0, 0)
    return best[1], best[2], best[3]


def tiles_for(frames: int, height: int, width: int, max_tokens: int) -> list[LTX2DFREpilogueTile]:
    """The spatial tiles (all latent frames each) and their blend windows, which sum to one."""
    down, across, (oh, ow) = tile_counts(frames, height, width, max_tokens)
    tiles = []
    for rows in split_by_count(height, down, oh):
        for cols in split_by_count(width, across, ow):
            window = (trapezoidal_mask_1d(rows.end - rows.start, rows.left_ramp, rows.right_ramp)[:, None]
                      * trapezoidal_mask_1d(cols.end - cols.start, cols.left_ramp, cols.right_ramp)[None, :])
            tiles.append(LTX2DFREpilogueTile(
                frames=slice(0, frames), heights=slice(rows.start, rows.end), widths=slice(cols.start, cols.end),
                blend_weight=window[None].expand(frames, -1, -1),
            ))
    return tiles


@contextmanager
def tiled_transformer(transformer, max_tokens: int, record: dict):
    """Within the block, a transformer call with more than ``max_tokens`` base video tokens runs
    tile by tile and returns the blended prediction; smaller calls run as they are.

    ``record["tiles"]`` is set to the tile count of the tiled calls (1 when none was tiled).
    """
    forward = transformer.forward
    record["tiles"] = 1
    plans: dict[tuple, list] = {}  # every call of one refinement has the same grid: planned once

    def tiled_forward(*args, **kw):
        frames, height, width = kw.get("num_frames"), kw.get("height"), kw.get("width")
        coords = kw.get("video_coords")
        if args or coords is None or frames is None or frames * height * width <= max_tokens:
            return forward(*args, **kw)
        key = (frames, height, width, tuple(coords.shape), coords.device)
        if key not in plans:
            plans[key] = video_tile_plan(tiles_for(frames, height, width, max_tokens), coords, frames, height, width)
        plan = plans[key]
        record["tiles"] = len(plan)
        hidden = kw["hidden_states"]
        video, audio = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device), None
        for tile in plan:
            keep = tile.keep.to(hidden.device)
            part = dict(kw, hidden_states=hidden[:, keep], video_coords=tile.coords, return_dict=False)
            for name in ("timestep", "video_keyframes_mask"):  # per-token inputs, where given per token
                if isinstance(kw.get(name), torch.Tensor) and kw[name].ndim >= 2:
                    part[name] = kw[name][:, keep]
            if kw.get("video_self_attention_mask") is not None:
                part["video_self_attention_mask"] = kw["video_self_attention_mask"][:, keep][:, :, keep]
            tile_video, tile_audio = forward(**part)
            video.index_add_(1, keep, tile_video.float() * tile.weights.to(video.device, torch.float32).view(1, -1, 1))
            if tile_audio is not None:  # every tile heard the whole track in another video context
                audio = tile_audio.float() / len(plan) + (0 if audio is None else audio)
        out = (video.to(hidden.dtype), None if audio is None else audio.to(kw["audio_hidden_states"].dtype))
        if kw.get("return_dict", True):
            return AudioVisualModelOutput(sample=out[0], audio_sample=out[1])
        return out

    with forward_replaced(transformer, tiled_forward):
        yield


def _overlap(size: int, tiles: int) -> int:
    return 0 if tiles == 1 else min(TILE_OVERLAP, size // tiles // 2)


def _tile_size(size: int, tiles: int, overlap: int) -> int:
    return math.ceil((size + overlap * (tiles - 1)) / tiles)
