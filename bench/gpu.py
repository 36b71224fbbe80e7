"""The full-size LTX-2 on one GPU, random weights from the real configs (nothing to download).

    python bench/gpu.py --json --save          # needs CUDA; elsewhere prints {"skipped": true, ...}

Builds ``LTX2VideoTransformer3DModel`` with the LTX-2.0 (19B) config of diffusers' conversion
script (``scripts/convert_ltx2_to_diffusers.py``, version "2.0") directly on the GPU in bf16,
and - when the card has room - the Gemma-3-12B text model LTX-2 encodes prompts with. It times
one transformer pass at 768x512x121 (6,144 video tokens, 126 audio latents, 1,024 text tokens,
the text mask LTX-2 always passes) at batch 1 and batch 2 (a CFG pass), for eager and
``torch.compile`` (``compile_repeated_blocks``) on every attention backend that accepts the
mask; FLOPs come from ``torch.utils.flop_counter`` on the real forward, model-FLOPs utilization
against the card's dense bf16 peak. A guided step is batch 2 + one STG pass at batch 1; a
distilled step is one batch-1 pass. Without CUDA the models are built on the meta device
only, to check the configs (parameter counts), and the result says it was skipped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, parser  # noqa: E402

# diffusers scripts/convert_ltx2_to_diffusers.py, get_ltx2_transformer_config("2.0").
LTX2_TRANSFORMER = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
    attention_head_dim=128, cross_attention_dim=4096, vae_scale_factors=(8, 32, 32), pos_embed_max_pos=20,
    base_height=2048, base_width=2048, audio_in_channels=128, audio_out_channels=128, audio_patch_size=1,
    audio_patch_size_t=1, audio_num_attention_heads=32, audio_attention_head_dim=64, audio_cross_attention_dim=2048,
    audio_scale_factor=4, audio_pos_embed_max_pos=20, audio_sampling_rate=16000, audio_hop_length=160,
    num_layers=48, activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads", norm_elementwise_affine=False,
    norm_eps=1e-6, caption_channels=3840, attention_bias=True, attention_out_bias=True, rope_theta=10000.0,
    rope_double_precision=True, causal_offset=1, timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1000, rope_type="split",
)
# google/gemma-3-12b text_config; 48 layers + embeddings = the connectors' text_proj_in_factor 49.
GEMMA3_12B_TEXT = dict(
    hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16, num_key_value_heads=8,
    head_dim=256, vocab_size=262208, sliding_window=1024, query_pre_attn_scalar=256,
)
# Dense bf16 peak TFLOP/s (vendor datasheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
               "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0}
# Hub-kernel backends (flash_hub, _flash_3_hub, sage_hub) need a download: not tried by default.
BACKENDS = ["native", "_native_cudnn", "_native_efficient", "_native_flash", "flash", "_flash_3", "sage", "flex"]


def video_geometry(width: int, height: int, num_frames: int, fps: float) -> dict:
    """Latent sizes LTX-2 works on: 32x32 spatial, 8x temporal, 25 audio latents per second."""
    f, h, w = (num_frames - 1) // 8 + 1, height // 32, width // 32
    return {"latent_frames": f, "latent_height": h, "latent_width": w, "video_tokens": f * h * w,
            "audio_tokens": round(num_frames / fps * 25)}


def make_inputs(cfg: dict, geo: dict, batch: int, text_tokens: int, device, dtype) -> dict:
    """Transformer inputs of one pass, shaped as LTX2Pipeline builds them (see its __call__)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    mask = torch.zeros(batch, text_tokens, device=device, dtype=dtype)
    mask[:, -min(text_tokens, 64):] = 1  # a short prompt, left-padded as Gemma's tokenizer does
    return dict(
        hidden_states=randn(batch, geo["video_tokens"], cfg["in_channels"]),
        audio_hidden_states=randn(batch, geo["audio_tokens"], cfg["audio_in_channels"]),
        encoder_hidden_states=randn(batch, text_tokens, cfg["caption_channels"]),
        audio_encoder_hidden_states=randn(batch, text_tokens, cfg["caption_channels"]),
        timestep=torch.full((batch, geo["video_tokens"]), 500.0, device=device),
        audio_timestep=torch.full((batch,), 500.0, device=device),
        encoder_attention_mask=mask,
        audio_encoder_attention_mask=mask,
        num_frames=geo["latent_frames"], height=geo["latent_height"], width=geo["latent_width"], fps=24.0,
        audio_num_frames=geo["audio_tokens"], return_dict=False,
    )


def count_params_on_meta() -> dict:
    """Build both models without memory: their sizes prove the configs are the real ones."""
    from accelerate import init_empty_weights
    from diffusers import LTX2VideoTransformer3DModel
    from transformers import Gemma3TextConfig, Gemma3TextModel

    with init_empty_weights():
        transformer = LTX2VideoTransformer3DModel.from_config(LTX2_TRANSFORMER)
        text = Gemma3TextModel(Gemma3TextConfig(**GEMMA3_12B_TEXT))
    return {"transformer_params_b": round(sum(p.numel() for p in transformer.parameters()) / 1e9, 3),
            "text_encoder_params_b": round(sum(p.numel() for p in text.parameters()) / 1e9, 3)}


def timed(fn, repeats: int) -> float:
    import torch

    fn()  # warm-up (and compilation)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--num-frames", type=int, default=121)
    p.add_argument("--text-tokens", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)

    import torch

    sizes = count_params_on_meta()
    geo = video_geometry(args.width, args.height, args.num_frames, 24.0)
    if not torch.cuda.is_available():
        return emit("gpu", {"skipped": True, "reason": "no CUDA device", **sizes, **geo}, args)

    from diffusers import LTX2VideoTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = torch.device("cuda"), torch.bfloat16
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    result: dict = {"skipped": False, "device": name, "peak_bf16_tflops": peak, **sizes, **geo}

    # The text encoder first, alone, when the card has room for it next to nothing else.
    free, _ = torch.cuda.mem_get_info()
    if free > 40 * 2**30:
        from transformers import Gemma3TextConfig, Gemma3TextModel

        torch.set_default_dtype(dtype)
        with device:
            text = Gemma3TextModel(Gemma3TextConfig(**GEMMA3_12B_TEXT)).eval()
        torch.set_default_dtype(torch.float32)
        ids = torch.randint(0, GEMMA3_12B_TEXT["vocab_size"], (1, args.text_tokens), device=device)
        with torch.inference_mode():
            result["text_encode_s"] = round(timed(lambda: text(input_ids=ids, output_hidden_states=True), args.repeats), 4)
        result["text_encoder_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del text
        torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

    torch.set_default_dtype(dtype)
    with device:
        transformer = LTX2VideoTransformer3DModel.from_config(LTX2_TRANSFORMER).eval()
    torch.set_default_dtype(torch.float32)
    result["weights_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    inputs = {b: make_inputs(LTX2_TRANSFORMER, geo, b, args.text_tokens, device, dtype) for b in (1, 2)}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        transformer(**inputs[1])
    flops = {1: counter.get_total_flops()}
    flops[2] = 2 * flops[1]
    result["pflop_per_pass_b1"] = round(flops[1] / 1e15, 4)

    runs = {}
    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    for mode in modes:
        if mode == "compile":
            try:
                transformer.compile_repeated_blocks(fullgraph=True)
            except Exception as exc:  # noqa: BLE001 - reported, the eager numbers still stand
                runs["compile"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
        for backend in args.backends.split(","):
            key = f"{mode}/{backend}"
            try:
                transformer.set_attention_backend(backend)
                torch.cuda.reset_peak_memory_stats()
                with torch.inference_mode():
                    t1 = timed(lambda: transformer(**inputs[1]), args.repeats)
                    t2 = timed(lambda: transformer(**inputs[2]), args.repeats)
                runs[key] = {
                    "s_per_pass_b1": round(t1, 4), "s_per_pass_b2": round(t2, 4),
                    "s_per_distilled_step": round(t1, 4), "s_per_guided_step": round(t2 + t1, 4),
                    "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    "mfu_b2": round(flops[2] / t2 / (peak * 1e12), 4) if peak else None,
                }
            except Exception as exc:  # noqa: BLE001 - a backend that rejects the mask is a result
                runs[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    result["runs"] = runs
    ok = {k: v for k, v in runs.items() if "error" not in v}
    if ok:
        best = min(ok, key=lambda k: ok[k]["s_per_pass_b2"])
        result["best"] = {"run": best, **ok[best]}
    return emit("gpu", result, args)


if __name__ == "__main__":
    main()
