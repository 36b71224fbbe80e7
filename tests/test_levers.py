"""The speed levers (issue 16): --compile and --quantize fp8, their flags over the profile's
values, the refusals before any row, and compiled frames against eager ones on the CPU.
(The per-row levers: tests/test_fused_lora.py, tests/test_batched_guidance.py.)"""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest

from ltx_ray.errors import RunFatal
from ltx_ray.job.build import check_levers
from ltx_ray.schema.levers import LEVER_FLAGS, LeverFlags, Levers
from ltx_ray.schema.profiles import PROFILES


def test_a_profile_carries_the_levers_and_a_flag_given_overrides_it():
    assert all(p.levers == Levers() for p in PROFILES.values())  # every shipped profile: all off
    profile = Levers(compile=True, batch_guidance=True)
    assert LeverFlags().levers(profile) == profile  # no flag: the profile's
    got = LeverFlags(compile=False, quantize="fp8").levers(profile)
    assert got == Levers(compile=False, quantize="fp8", batch_guidance=True)


def test_the_commands_take_each_lever_as_a_flag_unset_meaning_the_profiles(tmp_path):
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args
    from ltx_ray.commands.serve import serve_args_from_cli

    parser, _ = build_parser()
    args = parser.parse_args(["run", "m.parquet", "--out", str(tmp_path), "--compile", "--quantize", "fp8",
                              "--no-fuse-stage2-lora"])
    config = run_config_from_args(args, ["m.parquet"])
    assert config.lever_flags() == {"compile": True, "quantize": "fp8", "fuse_stage2_lora": False, "batch_guidance": None}
    serve = serve_args_from_cli(parser.parse_args(["serve", "--store", str(tmp_path), "--batch-guidance"]))
    assert serve.lever_flags() == {"compile": None, "quantize": None, "fuse_stage2_lora": None, "batch_guidance": True}
    assert set(LEVER_FLAGS) <= set(config.model_fields) & set(serve.model_fields)


def test_submit_hands_the_lever_flags_to_the_run_inside_the_job():
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args
    from ltx_ray.commands.submit import run_argv

    parser, _ = build_parser()
    submitted = parser.parse_args(["submit", "m.parquet", "--out", "s3://b/out", "--address", "http://h:8265",
                                   "--compile", "--no-batch-guidance", "--quantize", "fp8"])
    argv = run_argv(submitted, submitted.manifests)
    assert {"--compile", "--no-batch-guidance"} <= set(argv) and not any("fuse" in a for a in argv)  # unset: not sent
    rerun = parser.parse_args(["run", *argv])
    assert run_config_from_args(rerun, ["m.parquet"]).lever_flags() == {
        "compile": True, "quantize": "fp8", "fuse_stage2_lora": None, "batch_guidance": False}


def test_fp8_is_refused_before_any_replica_off_a_cuda_bfloat16_run():
    with pytest.raises(RunFatal, match="--quantize fp8: float8 matmuls run on CUDA GPUs .* --device is cpu"):
        check_levers(Levers(quantize="fp8"), "cpu", "float32")
    with pytest.raises(RunFatal, match="--quantize fp8 computes in bfloat16 .* --dtype is float32"):
        check_levers(Levers(quantize="fp8"), "cuda", "float32")
    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(RunFatal, match="needs the torchao package"):
            check_levers(Levers(quantize="fp8"), "cuda", "bfloat16")
    else:
        check_levers(Levers(quantize="fp8"), "cuda", "bfloat16")
    check_levers(Levers(compile=True, fuse_stage2_lora=True, batch_guidance=True), "cpu", "float32")


def test_a_replica_refuses_fp8_on_a_card_without_float8_tensor_cores_naming_it():
    import torch

    from ltx_ray.engine.levers import fp8_card_problem

    problem = fp8_card_problem(torch.device("cuda:0"), "NVIDIA A100-SXM4-80GB", (8, 0))
    assert "NVIDIA A100-SXM4-80GB (compute capability 8.0) has no float8 tensor cores" in problem
    assert "use --quantize none" in problem
    assert "on cpu" in fp8_card_problem(torch.device("cpu"))
    for capability in [(8, 9), (9, 0), (10, 0), (12, 0)]:  # L4 / L40S, H100 / H200, B200, RTX 50
        assert fp8_card_problem(torch.device("cuda:0"), "card", capability) is None


def test_the_cli_stops_with_exit_2_and_no_rows_when_fp8_is_asked_on_the_cpu(tmp_path):
    from ltx_ray.cli import main
    from ltx_ray.storage.manifest import write_manifest

    write_manifest([{"job_id": "a", "prompt": "p", "width": 64, "height": 64, "num_frames": 9}], str(tmp_path / "m.parquet"))
    assert main(["run", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "out"), "--quantize", "fp8"]) == 2
    assert not (tmp_path / "out" / "results").exists()


def test_fp8_takes_the_linears_lightricks_cast_and_leaves_embeddings_norms_and_projections(tiny_model):
    import torch
    from diffusers import LTX2VideoTransformer3DModel

    from ltx_ray.engine.levers import fp8_linear

    transformer = LTX2VideoTransformer3DModel.from_pretrained(tiny_model.path, subfolder="transformer")
    linears = {n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    picked = {n for n, m in transformer.named_modules() if fp8_linear(m, n)}
    block = {n.removeprefix("transformer_blocks.0.") for n in picked if n.startswith("transformer_blocks.0.")}
    attentions = ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
    assert block == {f"{a}.{p}" for a in attentions for p in ("to_q", "to_k", "to_v", "to_out.0")} | {
        f"{f}.net.{p}" for f in ("ff", "audio_ff") for p in ("0.proj", "2")}
    assert len(picked) == len(transformer.transformer_blocks) * len(block)
    left = linears - picked
    assert {"proj_in", "proj_out", "audio_proj_in", "audio_proj_out", "caption_projection.linear_1",
            "time_embed.linear"} <= left and not any(n.startswith("transformer_blocks.") for n in left)


def test_the_sidecar_records_the_levers_a_replica_ran_with_and_what_they_did(tiny_model, tmp_path):
    """The profile's values with the run's flags over them (RunnerSpec -> engine -> sidecar)."""
    import json

    from ltx_ray.job.build import RunnerSpec, build_runner
    from ltx_ray.schema.manifest import ManifestRow

    runner = build_runner(RunnerSpec(model="tiny", out=str(tmp_path), run_id="levers", fuse_stage2_lora=True,
                                     batch_guidance=False))
    job = ManifestRow(job_id="pro", prompt="a lamp", width=128, height=64, num_frames=9, seed=1, steps=2,
                      two_stage=True).resolve(runner.model.profile)
    assert runner.run(job).status == "succeeded"
    sidecar = json.loads((tmp_path / "pro.json").read_text())
    assert sidecar["model"]["levers"] == {"compile": False, "quantize": "none", "fuse_stage2_lora": True,
                                          "batch_guidance": False}
    assert sidecar["generation"]["stages"][1]["lora_fused"] is True
    assert "stg_batched" not in sidecar["generation"]["stages"][0]


def test_an_operators_own_inductor_cache_folder_is_kept(monkeypatch, tmp_path):
    from ltx_ray.engine.levers import COMPILE_CACHE_ENV, use_compile_cache

    monkeypatch.setenv(COMPILE_CACHE_ENV, str(tmp_path / "mine"))
    assert use_compile_cache() == str(tmp_path / "mine") == os.environ[COMPILE_CACHE_ENV]


def _cpp_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "clang++", "c++")) or bool(os.environ.get("CXX"))


@pytest.mark.skipif(not _cpp_compiler(), reason="inductor builds CPU kernels with a C++ compiler; none here "
                    "(.ci/run installs g++)")
def test_compiled_blocks_give_eager_frames_and_a_new_size_compiles_nothing_more(tiny_model, engine, monkeypatch):
    """Tolerance: at most 1 of 255 in any pixel (float32; compiled kernels reorder sums).

    Inductor on the CPU is real here: the repeated block is traced, lowered to C++ and built
    with the compiler. Two settings keep it near 20 s on two cores, neither touching what is
    tested: scalar C++ kernels (no SIMD variants to build) and Python floats specialised (no
    restarted trace). A second job of another size must reuse the graph (dynamic shapes)."""
    import torch
    import torch._dynamo.config
    import torch._inductor.config
    from torch._dynamo.utils import counters

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from ltx_ray.engine.levers import COMPILE_CACHE_ENV, compile_cache_dir
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow

    # As in every replica: importing diffusers made inductor fill the variable with torch's default.
    monkeypatch.setenv(COMPILE_CACHE_ENV, default_cache_dir())
    torch._dynamo.reset()
    compiled = LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile,
                          levers=Levers(compile=True))
    blocks = compiled._pipes["t2v"].transformer.transformer_blocks
    assert all(b._compiled_call_impl is not None for b in blocks) and engine.levers["compile"] is False
    assert compiled.levers["compile_cache"] == os.environ[COMPILE_CACHE_ENV] == str(compile_cache_dir())

    def job(width, height, frames):  # one unguided pass a step: one graph to build
        return ManifestRow(job_id="j", prompt="a lamp", width=width, height=height, num_frames=frames, seed=3, steps=2,
                           guidance_scale=1).resolve(tiny_model.profile)

    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}), torch._dynamo.config.patch(specialize_float=True):
        got = compiled.generate(job(256, 160, 9), JobInputs()).frames.astype(int)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1  # the blocks ran compiled
        compiled.generate(job(128, 96, 17), JobInputs())
    assert counters["stats"]["unique_graphs"] == graphs  # dynamic over the token count: no new graph
    want = engine.generate(job(256, 160, 9), JobInputs()).frames.astype(int)
    assert np.abs(got - want).max() <= 1
    assert any(compile_cache_dir().rglob("*.py"))  # the kernels are in the model cache for later replicas


@pytest.mark.gpu
def test_fp8_and_compile_on_a_cuda_card_give_frames_near_bfloat16s(tiny_model):
    """torchao's float8 needs compute capability 8.9+: on an older card this checks the refusal."""
    import torch

    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow

    job = ManifestRow(job_id="j", prompt="a lamp", width=256, height=160, num_frames=9, seed=3, steps=2).resolve(
        tiny_model.profile)
    make = dict(device="cuda", dtype="bfloat16", profile=tiny_model.profile)
    if torch.cuda.get_device_capability() < (8, 9):
        with pytest.raises(RunFatal, match="has no float8 tensor cores"):
            LTX2Engine(tiny_model.path, **make, levers=Levers(quantize="fp8"))
        return
    fast = LTX2Engine(tiny_model.path, **make, levers=Levers(quantize="fp8", compile=True))
    assert fast.levers["fp8_linears"] > 0  # the 16-wide video linears (torchao skips the 8-wide audio ones)
    got = fast.generate(job, JobInputs()).frames.astype(float)
    want = LTX2Engine(tiny_model.path, **make).generate(job, JobInputs()).frames.astype(float)
    # float8's rounding, not another video: the frames follow bfloat16's closely (a guess until run on a GPU).
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9
