"""--attention: diffusers' attention dispatcher picks the transformer's kernel, checked before any replica starts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ltx_ray.job.build import check_attention
from ltx_ray.errors import RunFatal


def test_a_kernel_the_machine_lacks_is_fatal_naming_the_package_or_the_device():
    with pytest.raises(RunFatal, match="--attention flash: its kernels run on CUDA GPUs and --device is cpu"):
        check_attention("flash", "cpu")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(RunFatal, match="needs the flash-attn package, which is not installed: pip install flash-attn"):
            check_attention("flash", "cuda")
    if importlib.util.find_spec("sageattention") is None:
        with pytest.raises(RunFatal, match="needs the sageattention package"):
            check_attention("sage", "cuda")
    check_attention("native", "cpu")  # always there


def test_the_cli_stops_before_any_replica_when_the_kernel_is_missing(tmp_path):
    from ltx_ray.cli import main
    from ltx_ray.storage.manifest import write_manifest

    write_manifest([{"job_id": "a", "prompt": "p", "width": 64, "height": 64, "num_frames": 9}], str(tmp_path / "m.parquet"))
    assert main(["run", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "out"), "--attention", "sage"]) == 2
    assert not (tmp_path / "out" / "results").exists()


@pytest.mark.e2e
def test_the_engine_hands_the_kernel_to_every_attention_of_the_transformer_and_records_it(tiny_model, engine):
    """Shown with the dispatcher's CPU math kernel (flash and sage need CUDA): every attention
    processor carries the backend, and the frames are native SDPA's."""
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.types import JobInputs
    from ltx_ray.schema.manifest import ManifestRow

    math = LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile, attention="_native_math")
    processors = [m.processor for m in math._pipes["t2v"].transformer.modules() if hasattr(m, "processor")]
    assert processors and {str(p._attention_backend.value) for p in processors} == {"_native_math"}
    assert math.attention == "_native_math" and engine.attention == "native"
    job = ManifestRow(job_id="j", prompt="a lamp", width=128, height=64, num_frames=9, seed=1).resolve(tiny_model.profile)
    a, b = engine.generate(job, JobInputs()).frames.astype(int), math.generate(job, JobInputs()).frames.astype(int)
    assert np.abs(a - b).max() <= 1
