"""The Gemma side of the architecture twins: a byte tokenizer under Gemma's real class, the tiny
text encoders (Gemma 3 for LTX-2.0 / 2.3, Gemma 4 unified for LTX-2.5) and the prompt enhancers
``--enhancer`` takes (a Gemma 3 processor; LTX-2.5's separate google/gemma-4-E2B-it).

Only classes, model types and the processor's contract are real; sizes are as small as the
connectors and the processors allow. The special tokens carry Gemma 3's names (Gemma 4's
processor reads them by role: ``boi_token``, ``image_token``, ``boa_token`` ...).
"""

from __future__ import annotations

from pathlib import Path

# The text encoder's hidden size and layer count feed the connectors: caption_channels =
# hidden size, text_proj_in_factor = layers + 1 (every hidden state, embeddings included, is stacked).
TEXT_HIDDEN = 32  # Gemma 3 12B: 3840
TEXT_LAYERS = 2  # Gemma 3 12B: 48

# Gemma 3's turn and image tokens, by their real names, and a chat template in its format: what
# prompt enhancement's processor needs (image: <start_of_image>, expanded by the processor).
GEMMA_TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>"]
GEMMA_IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
# Gemma 4's processor also wants audio tokens (it checks them even for text and images).
GEMMA_AUDIO_TOKENS = {"boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>", "audio_token": "<audio_soft_token>"}
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ boi_token }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Gemma 4's template names an image by its image token, which its processor expands.
GEMMA4_CHAT_TEMPLATE = GEMMA_CHAT_TEMPLATE.replace("{{ boi_token }}", "{{ image_token }}")
# The Gemma 3 enhancer twin's processor: 28 px images (the twin vision tower's; real 896) as 4
# soft tokens (the twin text encoder's mm_tokens_per_image; real 256). Gemma 4's processor takes
# 70 soft tokens an image at the least (real 280).
ENHANCER_IMAGE_SIZE, ENHANCER_IMAGE_TOKENS = 28, 4
GEMMA4_IMAGE_TOKENS = 70


def build_gemma_tokenizer(gemma4: bool = False):
    """A Gemma tokenizer (the real class, so model_index names it) over bytes, built offline.

    Gemma's own special-token ids (pad 0, eos 1, bos 2, unk 3, mask 4), a word-boundary
    token and the 256 byte-fallback tokens: every UTF-8 byte of a prompt is one token; then
    Gemma 3's turn and image tokens (``gemma4``: and audio tokens, with Gemma 4's template).
    """
    from transformers import GemmaTokenizer

    special = {**GEMMA_IMAGE_TOKENS, **(GEMMA_AUDIO_TOKENS if gemma4 else {})}
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581"])}
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    for token in GEMMA_TURN_TOKENS + list(special.values()):
        vocab[token] = len(vocab)
    return GemmaTokenizer(
        vocab=vocab, merges=[], add_bos_token=True, model_max_length=1024,
        extra_special_tokens=special, chat_template=GEMMA4_CHAT_TEMPLATE if gemma4 else GEMMA_CHAT_TEMPLATE,
    )


def _gemma4_text_config(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 16,
        "max_position_embeddings": 2048,
        "sliding_window": 64,
        "layer_types": ["sliding_attention", "full_attention"],  # the last layer must be full
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def build_gemma4_text_encoder(tokenizer):
    """A tiny ``Gemma4UnifiedForConditionalGeneration`` (LTX-2.5's text encoder, model_type gemma4_unified)."""
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration

    config = Gemma4UnifiedConfig(
        text_config=_gemma4_text_config(tokenizer),
        vision_config={"mm_embed_dim": TEXT_HIDDEN, "output_proj_dims": TEXT_HIDDEN, "mm_posemb_size": 64},
        audio_config={},
    )
    return Gemma4UnifiedForConditionalGeneration(config).eval()


def make_enhancer_twin(out_dir: str | Path, like: str, seed: int = 0) -> Path:
    """What ``--enhancer`` takes for a ``like`` twin, saved as the real repo ships it at its root.

    LTX-2.0 / 2.3: their Gemma 3 text encoder rewrites prompts itself, so this is the Gemma 3
    processor (``Gemma3Processor``: the twin's tokenizer and a PIL image processor), as
    google/gemma-3-12b-it ships it. LTX-2.5: a separate enhancer, google/gemma-4-E2B-it: a tiny
    ``Gemma4ForConditionalGeneration`` (text and vision towers, no audio) and its
    ``Gemma4Processor`` (whose video processor needs torchvision).
    """
    out = Path(out_dir)
    if like == "ltx-2.5":
        _gemma4_enhancer(seed).save_pretrained(out)
        _gemma4_processor().save_pretrained(out)
        return out
    if like not in ("ltx-2.0", "ltx-2.3"):
        raise ValueError(f"like={like!r} is not a known LTX-2 generation; choose ltx-2.0, ltx-2.3 or ltx-2.5")
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    size = {"height": ENHANCER_IMAGE_SIZE, "width": ENHANCER_IMAGE_SIZE}
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size=size), tokenizer=build_gemma_tokenizer(),
        chat_template=GEMMA_CHAT_TEMPLATE, image_seq_length=ENHANCER_IMAGE_TOKENS,
    )
    processor.save_pretrained(out)
    return out


def _gemma4_processor():
    from transformers import Gemma4Processor
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

    tokenizer = build_gemma_tokenizer(gemma4=True)
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=Gemma4ImageProcessorPil(max_soft_tokens=GEMMA4_IMAGE_TOKENS),
        tokenizer=tokenizer, video_processor=Gemma4VideoProcessor(), chat_template=GEMMA4_CHAT_TEMPLATE,
        image_seq_length=GEMMA4_IMAGE_TOKENS,
    )


def _gemma4_enhancer(seed: int):
    """A tiny google/gemma-4-E2B-it: ``Gemma4ForConditionalGeneration`` with text and vision towers."""
    import torch
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    tokenizer = build_gemma_tokenizer(gemma4=True)
    token = tokenizer.convert_tokens_to_ids
    config = Gemma4Config(
        text_config={**_gemma4_text_config(tokenizer), "vocab_size_per_layer_input": len(tokenizer),
                     "hidden_size_per_layer_input": 8},  # real: 262,144 x 256 per-layer embeddings
        vision_config={"hidden_size": TEXT_HIDDEN, "intermediate_size": 2 * TEXT_HIDDEN, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "position_embedding_size": 256},
        audio_config=None,
        image_token_id=tokenizer.image_token_id, boi_token_id=token(tokenizer.boi_token), eoi_token_id=token(tokenizer.eoi_token),
    )
    torch.manual_seed(seed)
    return Gemma4ForConditionalGeneration(config).eval()
