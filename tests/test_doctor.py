"""``ltx-ray doctor`` as a person runs it: a table of checks, exit 0 when fine, 1 naming what is not."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltx_ray.doctor.services import check_model, check_ray, check_store

REPO = Path(__file__).resolve().parents[1]
LTX_RAY = [sys.executable, "-m", "ltx_ray.cli"]


def doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LTX_RAY, "doctor", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def test_doctor_passes_on_the_locked_install_and_prints_one_line_per_check(tiny_model):
    done = doctor("--model", "tiny")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("python", "packages", "torch", "torchaudio", "diffusers LTX2", "worker modules", "pyav encoders",
                 "cuda", "model tiny"):
        assert any(line.startswith(name) and "  OK  " in line for line in lines), (name, done.stdout)
    assert "requirements.lock" in next(line for line in lines if line.startswith("packages"))
    assert lines[-1] == "all checks passed"


@pytest.fixture(scope="module")
def doctor_json_with_two_faults(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One doctor process (torch, diffusers and Ray load in each) for two faults: a model that
    does not exist and an installed version the lock does not pin."""
    tmp = tmp_path_factory.mktemp("doctor")
    lock = (REPO / "requirements.lock").read_text().replace("\npyyaml==", "\npyyaml==0.0.1\n# was pyyaml==")
    (tmp / "requirements.lock").write_text(lock)
    return doctor("--json", "--model", str(tmp / "no-such-model"), "--lock", str(tmp / "requirements.lock")), tmp


@pytest.mark.e2e  # a doctor process loading torch, diffusers and Ray
def test_doctor_json_is_machine_readable_and_says_which_check_failed(doctor_json_with_two_faults):
    done, tmp = doctor_json_with_two_faults
    assert done.returncode == 1  # a report, not a run: never run's fatal 2
    report = json.loads(done.stdout)
    assert report["ok"] is False
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert sorted(failed) == sorted([f"model {tmp / 'no-such-model'}", "packages"])
    model = failed[f"model {tmp / 'no-such-model'}"]
    assert "does not exist" in model["detail"] and model["fix"]


@pytest.mark.e2e  # a doctor process loading torch, diffusers and Ray
def test_doctor_fails_when_an_installed_version_differs_from_the_lock(doctor_json_with_two_faults):
    done, _ = doctor_json_with_two_faults
    assert done.returncode == 1
    packages = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "packages")
    assert not packages["ok"] and "pyyaml" in packages["detail"] and "==0.0.1" in packages["detail"]
    assert "pip install -c requirements.lock" in packages["fix"]


def _broken_torchaudio(root: Path) -> Path:
    """A copy of the installed torchaudio whose native libraries need a symbol torch does not have:
    exactly how torchaudio 2.11.1 fails beside torch 2.11.0 (``undefined symbol``)."""
    import torchaudio

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a library with an undefined symbol")
    pkg = root / "torchaudio"
    shutil.copytree(Path(torchaudio.__file__).parent, pkg)
    src = root / "broken.c"
    src.write_text("extern const char *torch_exception_get_what_without_backtrace(void *);\n"
                   "const char *use(void *e) { return torch_exception_get_what_without_backtrace(e); }\n")
    for lib in (pkg / "lib").glob("*.so"):
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return root


@pytest.mark.e2e  # a doctor process loading torch, diffusers and Ray
def test_doctor_fails_naming_torchaudio_when_its_native_library_does_not_load(tmp_path):
    shadow = _broken_torchaudio(tmp_path)
    done = doctor("--json", env={"PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])})
    assert done.returncode == 1, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert not checks["torchaudio"]["ok"]
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in checks["torchaudio"]["detail"]
    assert "torchaudio must match torch" in checks["torchaudio"]["fix"]
    # What that breaks downstream is named too, while what does not depend on it still passes.
    assert not checks["diffusers LTX2"]["ok"]
    assert checks["torch"]["ok"] and checks["pyav encoders"]["ok"] and checks["packages"]["ok"]


def test_model_check_names_the_missing_component_and_the_folder(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model.path, model)
    good = check_model(str(model))
    assert good.ok and "8 components" in good.detail and "transformer" in good.detail
    shutil.rmtree(model / "vocoder")
    bad = check_model(str(model))
    assert not bad.ok
    assert "vocoder" in bad.detail and str(model) in bad.detail and str(model) in bad.fix


def test_model_check_on_a_folder_that_is_not_a_diffusers_model(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    result = check_model(str(tmp_path))
    assert not result.ok and "model_index.json" in result.detail


def test_store_check_writes_reads_and_deletes_a_probe(tmp_path):
    ok = check_store(str(tmp_path / "out"))
    assert ok.ok
    assert list((tmp_path / "out").iterdir()) == []  # the probe is gone


def test_store_check_names_the_uri_and_the_error_when_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    bad = check_store(str(blocker / "out"))
    assert not bad.ok and str(blocker / "out") in bad.detail and "Error" in bad.detail


def test_store_check_on_s3(s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="doctor-ok")
    assert check_store("s3://doctor-ok/videos").ok
    missing = check_store("s3://doctor-no-such-bucket/videos")
    assert not missing.ok and "s3://doctor-no-such-bucket/videos" in missing.detail


def test_ray_check_reports_the_live_cluster_and_its_gpus(ray_local):
    address = ray_local.get_runtime_context().gcs_address
    result = check_ray(address)
    assert result.ok, result.detail
    assert "1 live node(s), 2 GPU(s)" in result.detail  # the session cluster's two fake GPUs


@pytest.mark.e2e  # a doctor process loading torch, diffusers and Ray
def test_ray_check_on_a_dead_address_says_so_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = check_ray(f"127.0.0.1:{port}")
    assert not result.ok and "nothing answers" in result.detail and "ray start" in result.fix
    assert time.monotonic() - start < 30


@pytest.mark.e2e  # a doctor process loading torch, diffusers and Ray
def test_ray_check_on_an_address_that_accepts_but_never_answers_gives_up_at_its_bound():
    from ltx_ray.doctor.services import RAY_TIMEOUT_S

    # The doctor waits RAY_TIMEOUT_S (20 s, within its 30 s bound for the whole check); the
    # test gives the same check a 3 s bound so the suite does not wait the full 20 s.
    assert RAY_TIMEOUT_S + 5 <= 30  # the probe's wait plus the 5 s TCP connect stay within 30 s
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        start = time.monotonic()
        result = check_ray(f"127.0.0.1:{s.getsockname()[1]}", timeout_s=3)
        waited = time.monotonic() - start
    assert not result.ok and "no answer from the Ray cluster within 3 s" in result.detail
    assert 3 <= waited < 30
