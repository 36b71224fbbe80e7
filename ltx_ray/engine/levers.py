"""The transformer's load-time speed levers (issue 16): fp8 weights, then regional compile.

Applied once to each DiT a replica loads (``LTX2Engine``, and a row's other variant), after it
is placed on its card. The other two levers act per row: the stage-2 LoRA fused while stage
2 runs (``lora.LoraCache.fused``) and the guidance passes batched (``guidance.batched_stg``).

- ``--quantize fp8``: torchao's float8 dynamic activation + float8 weight, per-row scales
  (``Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())``), on the linears
  Lightricks themselves cast to fp8: attention q / k / v / out and the feed-forward of every
  transformer block (ltx-core ``quantization/fp8_cast.py``, ``_FP8_CAST_LINEAR_SUFFIXES``).
  Embeddings, AdaLN, the caption projection and proj_in / proj_out stay in bfloat16. torchao
  leaves a linear whose sizes are not multiples of 16 as it is (``_fp8_mm_compat``).
- ``--compile``: diffusers' ``compile_repeated_blocks`` (``_repeated_blocks`` =
  ``LTX2VideoTransformerBlock``): one compiled graph serves every block, ``dynamic=True`` so a
  new token count (another size or length) does not compile again. Inductor's cache goes
  under the model cache (``LTX_RAY_CACHE``, the volume the replicas share), so a later
  replica loads the kernels instead of building them, unless an operator set
  TORCHINDUCTOR_CACHE_DIR (``use_compile_cache``).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import torch

from ltx_ray.errors import RunFatal
from ltx_ray.schema.levers import Levers

# ltx-core quantization/fp8_cast.py: the Linears it stores in fp8 (dotless ff.* matches audio_ff too).
FP8_LINEAR_SUFFIXES = (".to_q", ".to_k", ".to_v", ".to_out.0", "ff.net.0.proj", "ff.net.2")
# float8 tensor cores: Ada (8.9), Hopper (9.0), Blackwell (10.x, 12.x).
FP8_MIN_CAPABILITY = (8, 9)
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def apply_levers(transformer: torch.nn.Module, levers: Levers, device: str) -> dict:
    """fp8 first, then compile (the compiled graph is traced over the float8 weights), on the
    transformer placed on ``device``. Returns what was done, for the sidecar (``model.levers``)."""
    record = levers.model_dump()
    if levers.quantize == "fp8":
        record["fp8_linears"] = quantize_fp8(transformer, torch.device(device))
    if levers.compile:
        record["compile_cache"] = compile_blocks(transformer, torch.device(device))
    return record


def fp8_linear(module: torch.nn.Module, name: str) -> bool:
    """torchao's filter: the blocks' attention and feed-forward linears."""
    return isinstance(module, torch.nn.Linear) and name.startswith("transformer_blocks.") and name.endswith(FP8_LINEAR_SUFFIXES)


def fp8_card_problem(device: torch.device, name: str | None = None, capability: tuple[int, int] | None = None) -> str | None:
    """Why float8 matmuls cannot run on ``device`` (a card ``name`` of compute ``capability``), or None."""
    if device.type != "cuda":
        return (f"--quantize fp8: float8 matmuls run on CUDA GPUs of compute capability 8.9 or newer (L4, L40S, H100, "
                f"H200, B200) and this replica's transformer is on {device}; use --quantize none")
    if capability < FP8_MIN_CAPABILITY:
        return (f"--quantize fp8: {name} (compute capability {capability[0]}.{capability[1]}) has no float8 tensor "
                "cores; fp8 needs 8.9 or newer (L4, L40S, H100, H200, B200): run on such cards or use --quantize none")
    return None


def quantize_fp8(transformer: torch.nn.Module, device: torch.device) -> int:
    """The blocks' linears to float8 in place; how many became float8. A card without float8
    tensor cores is fatal, naming it (torchao would only assert)."""
    card = (torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)) if device.type == "cuda" else ()
    if problem := fp8_card_problem(device, *card):
        raise RunFatal(problem)
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Float8Tensor, PerRow, quantize_

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=fp8_linear)
    return sum(1 for m in transformer.modules() if isinstance(getattr(m, "weight", None), Float8Tensor))


def compile_cache_dir() -> Path:
    from ltx_ray.engine.weights import cache_root

    return cache_root() / "torch-compile"


def compile_blocks(transformer: torch.nn.Module, device: torch.device) -> str:
    """Regional compile of the repeated blocks; the inductor cache folder it uses."""
    check_compilers(device)
    cache = use_compile_cache()
    transformer.compile_repeated_blocks(dynamic=True)
    return cache


def use_compile_cache() -> str:
    """Point inductor's cache (TORCHINDUCTOR_CACHE_DIR, read at every use) at the model cache,
    unless an operator set it. Importing inductor (diffusers does) fills the variable with
    torch's default, /tmp/torchinductor_<user>, so that value counts as unset."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get(COMPILE_CACHE_ENV)
    if current is None or current == default_cache_dir():
        os.environ[COMPILE_CACHE_ENV] = current = str(compile_cache_dir())
    return current


def check_compilers(device: torch.device) -> None:
    """Inductor builds CPU kernels with a C++ compiler, and Triton builds its CUDA launcher with a C
    compiler against Python's headers: say which is missing before the first row, not in it."""
    if device.type == "cuda":
        found = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
        headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
        if not found or not headers.is_file():
            missing = "a C compiler (gcc or clang)" if not found else f"Python's headers ({headers})"
            raise RunFatal(f"--compile on {device}: Triton builds its kernel launcher with a C compiler and Python's "
                           f"headers, and this machine lacks {missing}: apt-get install gcc python3-dev (the "
                           "cluster image has them), or run without --compile")
        return
    if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")):
        raise RunFatal(f"--compile on {device}: inductor builds CPU kernels with a C++ compiler and this machine has "
                       "none (g++, clang++): apt-get install g++, or run without --compile")
