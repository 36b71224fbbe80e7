"""A tiny, randomly initialised LTX-2 with the real geometry.

Real LTX-2 weights (a 19B transformer and a 12B Gemma-3 encoder) cannot be fetched on a
laptop or in CI, so ltx-ray ships this model as its default. It is built from the same
diffusers ``LTX2*`` components as the real checkpoint and is saved with ``save_pretrained``
so that it goes through exactly the same ``from_pretrained`` loading path as real weights.

What is kept real, and why (docs/engine.md, "The tiny model"):
- video VAE compression 32x spatial and 8x temporal (patch 4 and four down blocks), so a
  768x512x121 job has the real 6,144 video tokens; a toy compression makes token counts
  explode on larger sizes;
- audio VAE 4x mel / 4x time compression at 16 kHz with hop 160 (25 latents per second);
- a vocoder whose upsampling equals output_rate x hop / input_rate (24000 x 160 / 16000 =
  240), so the audio lasts as long as the video.
Everything else (widths, depths, vocabulary) is as small as the components allow.

Beside the pipeline it writes what the other tasks need, in the layout ``LTX2Engine``
looks for in any model folder:
- ``latent_upsampler/``: a tiny x2 spatial ``LTX2LatentUpsamplerModel`` (two-stage presets);
- ``loras/distilled.safetensors``: stands in for the distilled LoRA of stage-2 refinement;
- ``loras/style.safetensors``: a plain per-row LoRA for tests and demos;
- ``loras/ic-{depth,pose,canny}.safetensors``: IC-LoRAs for control videos, with the
  ``reference_downscale_factor`` metadata the official IC-LoRA files carry.
The LoRAs are random (both A and B initialised), so each visibly changes the output.
"""

from __future__ import annotations

import json
from pathlib import Path

from ltx_ray.schema.model_files import CARD_NAME  # the card ltx-ray writes beside a model it built

TINY_MODEL_ID = "ltx-ray/tiny-ltx2-random"
# Bumped whenever the architecture below changes, so cached copies are rebuilt.
TINY_MODEL_REVISION = "2"

_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def build_tokenizer():
    """A byte-level tokenizer built offline: every UTF-8 byte is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(_SPECIAL_TOKENS)}
    for ch in sorted(byte_alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=1024,
    )


def build_gemma3_text_encoder(tokenizer, hidden_size: int = 32, num_layers: int = 2):
    """A tiny ``Gemma3ForConditionalGeneration`` over ``tokenizer`` (vision tower as small as it allows)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    gemma_config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "sliding_window": 64,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "image_size": 28,
            "patch_size": 14,
        },
        mm_tokens_per_image=4,
        # A tokenizer with Gemma 3's image tokens (the twins') gets them; the tiny one has none.
        boi_token_index=getattr(tokenizer, "boi_token_id", None) or tokenizer.bos_token_id,
        eoi_token_index=getattr(tokenizer, "eoi_token_id", None) or tokenizer.eos_token_id,
        image_token_index=getattr(tokenizer, "image_token_id", None) or tokenizer.unk_token_id,
    )
    return Gemma3ForConditionalGeneration(gemma_config).eval()


def build_components(seed: int = 0) -> dict:
    """Build every component of a tiny LTX-2 pipeline, randomly initialised from ``seed``."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    tokenizer = build_tokenizer()

    torch.manual_seed(seed)
    text_hidden = 32
    text_layers = 2
    text_encoder = build_gemma3_text_encoder(tokenizer, text_hidden, text_layers)

    latent_channels = 16
    audio_latent_channels = 2
    mel_bins = 16

    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=latent_channels,
        out_channels=latent_channels,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        vae_scale_factors=(8, 32, 32),
        audio_in_channels=audio_latent_channels * (mel_bins // 4),
        audio_out_channels=audio_latent_channels * (mel_bins // 4),
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=text_hidden,
        rope_type="split",
    )

    torch.manual_seed(seed)
    connectors = LTX2TextConnectors(
        caption_channels=text_hidden,
        text_proj_in_factor=text_layers + 1,
        # Each connector's width (heads x head_dim) must equal the text hidden size.
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_type="split",
    )

    torch.manual_seed(seed)
    # Default block types (spatial, temporal, spatiotemporal, spatiotemporal) with patch 4
    # give the real 32x / 8x compression. The default ratio formula reports 64 / 16 for
    # these block types, so the real ratios are passed explicitly. Widths must grow across
    # blocks: equal widths break the decoder's residual upsamplers.
    vae = AutoencoderKLLTX2Video(
        latent_channels=latent_channels,
        block_out_channels=(8, 16, 32, 64),
        decoder_block_out_channels=(16, 32, 64),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        patch_size=4,
        patch_size_t=1,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )

    torch.manual_seed(seed)
    # ch_mult (1, 2, 4) keeps the real 4x mel / 4x time compression at 16 kHz, hop 160.
    # The latent statistics buffers have base_channels entries and are applied to packed
    # audio latents (latent_channels x mel_bins / 4 wide), so the two must be equal.
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=audio_latent_channels * (mel_bins // 4),
        output_channels=2,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        in_channels=2,
        resolution=32,
        latent_channels=audio_latent_channels,
        sample_rate=16000,
        mel_hop_length=160,
        mel_bins=mel_bins,
    )

    torch.manual_seed(seed)
    # upsample factors multiply to 24000 * 160 / 16000 = 240; hidden_channels must stay
    # >= 2 ** len(upsample_factors) or the last stage has no channels left.
    vocoder = LTX2Vocoder(
        in_channels=2 * mel_bins,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[12, 10, 4, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        output_sampling_rate=24000,
    )

    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "audio_vae": audio_vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "connectors": connectors,
        "transformer": transformer,
        "vocoder": vocoder,
    }


def build_latent_upsampler(latent_channels: int, seed: int = 0):
    """A tiny x2 spatial latent upsampler (GroupNorm needs widths that are multiples of 32)."""
    import torch
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    torch.manual_seed(seed)
    return LTX2LatentUpsamplerModel(in_channels=latent_channels, mid_channels=32, num_blocks_per_stage=1)


ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def write_lora(
    transformer,
    path: Path,
    seed: int,
    metadata: dict[str, str] | None = None,
    rank: int = 4,
    target_modules: list[str] | tuple[str, ...] = ATTENTION_PROJECTIONS,
) -> Path:
    """A random LoRA on ``target_modules`` (the attention projections unless told), in diffusers' ``transformer.*`` keys."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    # init_lora_weights=False draws B at random too (peft's default zeros it: a no-op LoRA).
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(target_modules), init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="tiny")
    state = get_peft_model_state_dict(transformer, adapter_name="tiny")
    transformer.delete_adapters("tiny")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"transformer.{k}": v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def make_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny LTX-2 (plus its upsampler and LoRAs) to ``out_dir``; returns the directory."""
    import copy

    from diffusers import LTX2Pipeline

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    pipe = LTX2Pipeline(**build_components(seed))
    pipe.save_pretrained(tmp)
    build_latent_upsampler(pipe.transformer.config.in_channels, seed).save_pretrained(tmp / "latent_upsampler")
    scratch = copy.deepcopy(pipe.transformer)  # adapters are added and removed on a copy
    write_lora(scratch, tmp / "loras" / "distilled.safetensors", seed + 1)
    write_lora(scratch, tmp / "loras" / "style.safetensors", seed + 2)
    for i, kind in enumerate(("depth", "pose", "canny")):
        write_lora(scratch, tmp / "loras" / f"ic-{kind}.safetensors", seed + 3 + i, {"reference_downscale_factor": "1"})
    (tmp / CARD_NAME).write_text(
        json.dumps({"model_id": TINY_MODEL_ID, "revision": TINY_MODEL_REVISION, "seed": seed})
    )
    return publish_dir(tmp, out)


def publish_dir(tmp: Path, out: Path) -> Path:
    """Move a fully written ``tmp`` folder to ``out``: a reader never sees a half-written model."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
