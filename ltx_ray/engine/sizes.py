"""A model folder's transformer shape and parameter counts, from its configs and the headers
of its safetensors files: nothing is loaded, and no torch is imported (``ltx-ray plan``)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from ltx_ray.schema.cost import TransformerShape
from ltx_ray.schema.model import ResolvedModel
from ltx_ray.schema.model_files import index_components


# Which tokens a DiT weight multiplies, by its module: the timestep embeddings and AdaLN
# run once per pass; the text cross-attention's keys and values run over the prompt; the
# audio <-> video cross-attention's queries over one stream and keys / values over the other.
TIMESTEP_MODULES = ("time_embed", "adaln", "scale_shift", "_gate.")
CROSS_MODAL = {"audio_to_video_attn": ("video", "audio"), "video_to_audio_attn": ("audio", "video")}


def header_shapes(file: Path) -> dict[str, list[int]]:
    """Each tensor's shape in one .safetensors file, from its JSON header."""
    with open(file, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


def folder_shapes(folder: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes.update(header_shapes(file))
    return shapes


def folder_params(folder: Path) -> int:
    return sum(math.prod(shape) for shape in folder_shapes(folder).values())


def token_kind(name: str) -> str:
    """The tokens the weight ``name`` (a matrix of the DiT) multiplies: video, audio, text or one."""
    if any(m in name for m in TIMESTEP_MODULES):
        return "one"
    for module, (queries, keys) in CROSS_MODAL.items():
        if f".{module}." in name:
            return keys if (".to_k." in name or ".to_v." in name) else queries
    if ("attn2.to_k." in name or "attn2.to_v." in name) or "caption_projection" in name:
        return "text"
    return "audio" if "audio" in name else "video"


def attention_dims(shapes: dict[str, list[int]]) -> dict[str, int]:
    """Sum over the blocks of each attention's width, keyed ``"<query tokens>/<key tokens>"``."""
    dims: dict[str, int] = {}
    for name, shape in shapes.items():
        if not name.endswith(".to_q.weight"):
            continue
        module = name.split(".")[-3]
        if module in CROSS_MODAL:
            queries, keys = CROSS_MODAL[module]
        else:
            queries = "audio" if module.startswith("audio") else "video"
            keys = "text" if module.endswith("attn2") else queries
        dims[f"{queries}/{keys}"] = dims.get(f"{queries}/{keys}", 0) + shape[0]
    return dims


def transformer_shape(model: ResolvedModel) -> TransformerShape:
    """The shape ``schema.cost`` prices a pass with, for the transformer ``model``'s profile loads."""
    root = Path(model.path)
    profile = model.profile
    config = json.loads((root / profile.transformer_subfolder / "config.json").read_text())
    dit = folder_shapes(root / profile.transformer_subfolder)
    linear: dict[str, int] = {}
    for name, shape in dit.items():
        if len(shape) == 2:  # matrices; norms and biases cost next to nothing
            linear[token_kind(name)] = linear.get(token_kind(name), 0) + math.prod(shape)
    index = json.loads((root / "model_index.json").read_text())
    loaded = [profile.transformer_subfolder if name == "transformer" else name for name in index_components(index)]
    weights = {name: folder_params(root / name) for name in loaded if (root / name).is_dir()}
    upsampler = Path(model.upsampler) if model.upsampler else root / profile.upsampler
    return TransformerShape(
        linear_params=linear,
        attention_dims=attention_dims(dit),
        video_dim=config["num_attention_heads"] * config["attention_head_dim"],
        audio_tokens_per_s=config["audio_sampling_rate"] / config["audio_hop_length"] / config["audio_scale_factor"],
        text_tokens=profile.max_sequence_length,
        weights_params=weights,
        upsampler_params=folder_params(upsampler) if upsampler.is_dir() else 0,
    )
