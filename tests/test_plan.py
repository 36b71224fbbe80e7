"""``ltx-ray plan``: what each row will run and cost, read from the model's configs and file
headers without loading weights, and priced with the FLOP count torch measures on a real pass."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ltx_ray.engine.sizes import transformer_shape
from ltx_ray.engine.twins import TWIN_GENERATIONS, resolve_twin
from ltx_ray.engine.weights import resolve_model
from ltx_ray.schema.cost import audio_tokens, pass_flops
from ltx_ray.schema.schedules import STAGE_2_DISTILLED_SIGMAS, video_tokens
from ltx_ray.storage.manifest import write_manifest

pytestmark = pytest.mark.e2e  # builds (once, cached) the twins


@pytest.fixture(scope="module")
def twins(model_cache):
    return {g: resolve_twin(g) for g in TWIN_GENERATIONS}


@pytest.mark.parametrize("generation", ["ltx-2.0", "ltx-2.5"])
def test_the_flop_estimate_of_a_pass_matches_torchs_count_on_the_twins_transformer(twins, generation):
    from diffusers import LTX2Pipeline
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = resolve_model(str(twins[generation]))
    shape = transformer_shape(model)
    pipe = LTX2Pipeline.from_pretrained(model.path, dtype=torch.float32)
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda _m, a, kw: calls.append((a, kw)), with_kwargs=True)
    width, height, frames, fps = 256, 192, 17, 24.0
    with torch.inference_mode():
        pipe(prompt="a lamp", width=width, height=height, num_frames=frames, frame_rate=fps, sigmas=[1.0],
             guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0,
             audio_modality_scale=1.0, max_sequence_length=model.profile.max_sequence_length, output_type="latent")
        args, kwargs = calls[0]
        # The math kernel spells attention as matmuls, which the counter counts (not the fused CPU kernel).
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            pipe.transformer(*args, **kwargs)
    tv, ta = kwargs["hidden_states"].shape[1], kwargs["audio_hidden_states"].shape[1]
    assert kwargs["hidden_states"].shape[0] == 1  # one unguided pass, batch 1
    assert tv == video_tokens(width, height, frames) and ta == audio_tokens(shape, frames / fps)
    measured, estimated = counter.get_total_flops(), pass_flops(shape, tv, ta)
    assert estimated == pytest.approx(measured, rel=0.01), (estimated, measured)


def test_plan_json_gives_each_rows_stages_sigmas_and_cost_and_names_bad_rows(twins, tmp_path, capsys):
    from ltx_ray.cli import main

    rows = [{"job_id": "fast-5", "prompt": "a lamp", "preset": "fast", "seconds": 5.0},
            {"job_id": "ultra-10", "prompt": "a lamp", "preset": "ultra", "seconds": 10.0},
            {"job_id": "bad", "prompt": "a lamp", "width": 1000}]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    for generation in TWIN_GENERATIONS:
        code = main(["plan", str(tmp_path / "m.parquet"), "--model", str(twins[generation]), "--json"])
        out = capsys.readouterr()
        assert code == 1 and "bad" in out.err and "width" in out.err  # the invalid row, named; the rest planned
        plans = {p["job_id"]: p for p in json.loads(out.out)}
        assert set(plans) == {"fast-5", "ultra-10"}
        ultra, fast = plans["ultra-10"], plans["fast-5"]
        assert ultra["generation"] == generation and len(ultra["stages"]) == 2 and len(fast["stages"]) == 1
        for stage in ultra["stages"] + fast["stages"]:
            s = stage["sigmas"]
            assert all(math.isfinite(x) and 0 < x <= 1 for x in s) and all(a > b for a, b in zip(s, s[1:]))
            assert len(s) == stage["steps"] and stage["tflops"] > 0
        assert ultra["stages"][1]["sigmas"] == STAGE_2_DISTILLED_SIGMAS
        assert (ultra["stages"][1]["width"], ultra["stages"][1]["height"]) == (3840, 2176)
        assert ultra["stages"][1]["video_tokens"] == video_tokens(3840, 2176, ultra["num_frames"])
        assert ultra["tflops"] > fast["tflops"] and ultra["peak_gpu_gib"] > ultra["weights_gib"] > 0
        assert ultra["denoise_cost"] > fast["denoise_cost"]
        passes = ultra["stages"][0]["transformer_passes_per_step"]
        assert passes == (1 if generation == "ltx-2.5" else 4)  # 2.5's transformer/ is distilled


def test_plan_prints_a_line_per_row_and_the_nights_total(twins, tmp_path, capsys):
    from ltx_ray.cli import main

    write_manifest([{"job_id": f"r{i}", "prompt": "a lamp", "preset": "fast", "seconds": 5.0} for i in range(3)],
                   str(tmp_path / "m.parquet"))
    assert main(["plan", str(tmp_path / "m.parquet"), "--model", str(twins["ltx-2.3"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["r0", "r1", "r2"]
    assert "ltx-2.3-dev" in lines[0] and "30 steps x 4 passes" in lines[0] and "TFLOP" in lines[0]
    assert lines[-1].startswith("3 rows on ltx-2.3-dev:") and "0 invalid rows" in lines[-1]


def test_plan_names_the_pool_each_row_goes_to_and_sums_each_pool(tiny_model, tmp_path, capsys):
    from ltx_ray.cli import main

    rows = [{"job_id": "small", "prompt": "a lamp", "width": 768, "height": 512, "num_frames": 121},
            {"job_id": "big", "prompt": "a lamp", "width": 1920, "height": 1088, "num_frames": 121}]
    write_manifest(rows, str(tmp_path / "m.parquet"))
    pools = ["--pool", "small:replicas=4,gpus=1", "--pool", "big:gpus=4,parallel=ulysses,min_pixels=1920x1088x121"]
    assert main(["plan", str(tmp_path / "m.parquet"), *pools, "--json"]) == 0
    assert {p["job_id"]: p["pool"] for p in json.loads(capsys.readouterr().out)} == {"small": "small", "big": "big"}
    assert main(["plan", str(tmp_path / "m.parquet"), *pools]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split(":")[0]: line.rsplit(" -> ", 1)[-1] for line in lines[:2]} == {"small": "pool small", "big": "pool big"}
    assert lines[-2].startswith("pool small: 4 replica(s) of 1 GPU(s): 1 rows")
    assert lines[-1].startswith("pool big: 1 replica(s) of 4 GPU(s) as 4 ranks (ulysses): 1 rows")
