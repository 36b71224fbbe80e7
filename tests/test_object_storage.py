"""Manifests, inputs, model and outputs on a real S3 API (moto server), and the same suite on a local folder."""

from __future__ import annotations

import json
import uuid

import fsspec
import pytest

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.storage.manifest import write_manifest
from ltx_ray.storage.mux import probe
from ltx_ray.storage.results import read_results
from ltx_ray.storage.store import OutputStore
from tests.conftest import draw_image

SMALL = {"width": 256, "height": 160, "num_frames": 17}


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path, s3_endpoint):
    if request.param == "local":
        return str(tmp_path / "store")
    fs = fsspec.filesystem("s3")
    bucket = f"ltx-ray-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return f"s3://{bucket}/team"


def test_a_run_reads_and_writes_through_the_store(ray_local, base, tmp_path):
    fs, root = fsspec.core.url_to_fs(base)
    fs.makedirs(f"{root}/inputs", exist_ok=True)
    fs.put_file(str(draw_image(tmp_path / "p.png")), f"{root}/inputs/p.png")
    rows = [
        {"job_id": "t2v", "prompt": "a lamp", **SMALL, "metadata": json.dumps({"sku": "L1"})},
        {"job_id": "i2v", "prompt": "a lamp turns", "image_uri": f"{base}/inputs/p.png", **SMALL},
        {"job_id": "gone", "prompt": "p", "image_uri": f"{base}/inputs/missing.png", **SMALL},
    ]
    write_manifest(rows, f"{base}/manifests/m.parquet")

    summary = run(RunConfig(manifests=[f"{base}/manifests/"], out=f"{base}/out"), log=lambda *_: None)

    assert (summary.succeeded, summary.failed, summary.exit_code) == (2, 1, 1)
    results = {r["job_id"]: r for r in read_results(OutputStore(f"{base}/out")).to_pylist()}
    assert set(results) == {"t2v", "i2v", "gone"}
    assert results["gone"]["error_stage"] == "fetch_inputs" and "missing.png" in results["gone"]["error"]
    for job_id in ("t2v", "i2v"):
        assert results[job_id]["video_uri"] == f"{base}/out/{job_id}.mp4"
        p = probe(fs.cat_file(f"{root}/out/{job_id}.mp4"))
        assert (p.video_codec, p.audio_codec, p.num_frames, p.width) == ("h264", "aac", 17, 256)
        sidecar = json.loads(fs.cat_file(f"{root}/out/{job_id}.json"))
        assert sidecar["outputs"]["sha256"] == results[job_id]["sha256"]
        assert fs.cat_file(f"{root}/out/{job_id}.jpg")[:2] == b"\xff\xd8"
    names = [p for p in fs.find(f"{root}/out")]
    assert not [n for n in names if ".partial" in n or "write-probe" in n]
    assert not fs.exists(f"{root}/out/gone.mp4")


def test_a_model_on_object_storage_is_copied_to_the_cache_and_loads(s3_endpoint, tiny_model, tmp_path, monkeypatch):
    from ltx_ray.engine.ltx2 import LTX2Engine
    from ltx_ray.engine.weights import resolve_model

    fs = fsspec.filesystem("s3")
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.put(tiny_model.path.rstrip("/") + "/", f"{bucket}/tiny/", recursive=True)
    monkeypatch.setenv("LTX_RAY_CACHE", str(tmp_path / "cache"))
    model = resolve_model(f"s3://{bucket}/tiny")
    assert model.path.startswith(str(tmp_path / "cache")) and model.model_id == tiny_model.model_id
    engine = LTX2Engine(model.path, profile=model.profile)
    assert engine.audio_sample_rate == 24000
    with pytest.raises(Exception, match="model_index.json"):
        resolve_model(f"s3://{bucket}/nothing-here")
