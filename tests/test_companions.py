"""Companion files where the real repos ship them: what a profile fetches from a mirror or the
Hub (and what it leaves there), ``--upsampler`` / ``--distilled-lora``, and a model folder that
lacks a component, each on the LTX-2.0 twin in its real layout."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import fsspec
import pytest

from ltx_ray.cli import main
from ltx_ray.engine.twins import resolve_twin
from ltx_ray.engine.weights import check_companions, resolve_model
from ltx_ray.errors import ModelNotFound
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.model_files import needed_patterns, select
from ltx_ray.schema.profiles import PROFILES
from ltx_ray.storage.manifest import write_manifest

REAL_CONFIGS = Path(__file__).resolve().parents[1] / "ltx_ray" / "engine" / "real_configs"


def shards(folder: str, stem: str, n: int) -> list[str]:
    return [f"{folder}/{stem}-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)] + [
        f"{folder}/{stem}.safetensors.index.json", f"{folder}/config.json"]


# A mirror of a real repo as an object store or the Hub lists it: the diffusers folders (sharded
# as converted weights are), the companions, and what no pipeline reads.
FOLDERS = (
    shards("transformer", "diffusion_pytorch_model", 8) + shards("text_encoder", "model", 5)
    + ["text_encoder/generation_config.json", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
       "tokenizer/special_tokens_map.json", "scheduler/scheduler_config.json", "model_index.json"]
    + [f"{c}/{f}" for c in ("vae", "audio_vae", "vocoder", "connectors", "latent_upsampler")
       for f in ("config.json", "diffusion_pytorch_model.safetensors")]
)
SINGLE_FILES = ["ltx-2-19b-dev.safetensors", "ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-distilled.safetensors",
                "ltx-2-19b-distilled-fp8.safetensors", "ltx-2-spatial-upscaler-x2-1.0.safetensors", "README.md",
                ".gitattributes"]
LORA_20, LORA_23 = "ltx-2-19b-distilled-lora-384.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"
LORA_25 = "ltx-2.5-22b-distilled-lora-450-bf16.safetensors"
MIRROR_20 = FOLDERS + SINGLE_FILES + [LORA_20, LORA_23]
MIRROR_25 = (FOLDERS + shards("transformer_full", "diffusion_pytorch_model", 8) + shards("duration_head", "x", 1)
             + ["diffusion_decoder/config.json", "diffusion_decoder/diffusion_pytorch_model.safetensors", LORA_25, LORA_23])


def index(generation: str) -> dict:
    return json.loads((REAL_CONFIGS / generation / "model_index.json").read_text())


def picked(profile: str, listing: list[str], generation: str, **fetch) -> set[str]:
    return set(select(listing, needed_patterns(PROFILES[profile], index(generation), **fetch)))


def test_a_profile_fetches_its_components_and_companions_and_no_single_file_checkpoint():
    assert picked("ltx-2.0-dev", MIRROR_20, "ltx-2.0") == set(FOLDERS) | {LORA_20}
    assert picked("ltx-2.0-distilled", MIRROR_20, "ltx-2.0") == set(FOLDERS)  # refines without a LoRA
    # --upsampler / --distilled-lora name other files: the profile's stay where they are.
    without = picked("ltx-2.0-dev", MIRROR_20, "ltx-2.0", upsampler=False, distilled_lora=False)
    assert without == {p for p in FOLDERS if not p.startswith("latent_upsampler/")}
    # LTX-2.5 full loads transformer_full/ and reads only the config of transformer/ (the distilled DiT).
    full = picked("ltx-2.5-full", MIRROR_25, "ltx-2.5")
    assert full == ({p for p in MIRROR_25 if not p.startswith("transformer/") and p != LORA_23}
                    | {"transformer/config.json"})
    distilled = picked("ltx-2.5-distilled", MIRROR_25, "ltx-2.5")
    assert distilled == {p for p in MIRROR_25 if not p.startswith("transformer_full/") and p not in (LORA_23, LORA_25)}


@pytest.fixture(scope="module")
def twin(model_cache) -> Path:
    return resolve_twin("ltx-2.0")


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.e2e  # builds (once, cached) the 2.0 twin
def test_an_object_store_mirror_copies_only_what_the_profile_loads_and_says_how_much(s3_endpoint, twin, tmp_path,
                                                                                   monkeypatch, capsys):
    fs = fsspec.filesystem("s3")
    bucket = f"mirror-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.put(str(twin) + "/", f"{bucket}/LTX-2/", recursive=True)
    decoys = {"ltx-2-19b-dev.safetensors": 3_000_000, LORA_23: 200_000, "README.md": 1_000}
    for name, size in decoys.items():
        fs.pipe_file(f"{bucket}/LTX-2/{name}", b"\0" * size)
    monkeypatch.setenv("LTX_RAY_CACHE", str(tmp_path / "cache"))

    model = resolve_model(f"s3://{bucket}/LTX-2")
    assert model.profile.name == "ltx-2.0-dev" and model.path.startswith(str(tmp_path / "cache"))
    assert files(Path(model.path)) == files(twin)  # every twin file is one the profile loads; no decoy
    err = capsys.readouterr().err
    assert re.search(rf"copying {len(files(twin))} files, [\d.]+ MB, that profile ltx-2.0-dev loads", err), err
    assert "skipping 3 files, 3.2 MB (largest: ltx-2-19b-dev.safetensors" in err, err
    assert model.distilled_lora == str(Path(model.path) / LORA_20)

    assert resolve_model(f"s3://{bucket}/LTX-2").path == model.path  # copied once
    assert "copying" not in capsys.readouterr().err
    # With --distilled-lora the profile's own file is not copied either.
    fs.put_file(str(twin / LORA_20), f"{bucket}/loras/my-stage2.safetensors")
    other = resolve_model(f"s3://{bucket}/LTX-2", distilled_lora=f"s3://{bucket}/loras/my-stage2.safetensors")
    assert files(Path(other.path)) == files(twin) - {LORA_20}
    assert Path(other.distilled_lora).name == "my-stage2.safetensors" and Path(other.distilled_lora).is_file()
    assert "skipping 4 files" in capsys.readouterr().err


def hub_cache(root: Path, repo_id: str, twin: Path, decoys: dict[str, int]) -> tuple[Path, str]:
    """A Hub cache holding ``twin`` as ``repo_id``'s main, whose cached tree listing (what
    ``snapshot_download`` selects from) also names ``decoys``, which are not on disk."""
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(twin, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    listing = {p: (snapshot / p).stat().st_size for p in files(snapshot)} | decoys
    (repo / "trees").mkdir()
    (repo / "trees" / f"{commit}.json").write_text(json.dumps({
        "format_version": 1, "files": {p: {"size": size, "blob_id": uuid.uuid4().hex} for p, size in listing.items()}}))
    return snapshot, commit


@pytest.mark.e2e  # builds (once, cached) the 2.0 twin
def test_a_hub_id_downloads_only_what_the_profile_loads_into_the_hub_cache(twin, tmp_path, monkeypatch):
    """huggingface_hub offline, over a cache holding the twin: a pattern that matched a decoy
    (listed, not on disk) would send huggingface_hub to the network, and fail."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot, commit = hub_cache(tmp_path / "hub", "Lightricks/LTX-2", twin,
                                 {"ltx-2-19b-dev.safetensors": 40_000_000_000, LORA_23: 7_000_000_000})
    model = resolve_model("Lightricks/LTX-2")
    assert (model.path, model.model_id, model.revision, model.profile.name) == (
        str(snapshot), "Lightricks/LTX-2", commit, "ltx-2.0-dev")
    assert model.distilled_lora == str(snapshot / LORA_20)  # check_companions looks where the files are
    # A listed file the profile does load, missing from the cache: huggingface_hub goes for it.
    hub_cache(tmp_path / "hub", "org/ltx-2-more", twin, {"transformer/diffusion_pytorch_model-2.safetensors": 1})
    with pytest.raises(ModelNotFound, match="Hub download failed"):
        resolve_model("org/ltx-2-more")


def run_cli(tmp_path: Path, model: Path, *flags: str) -> tuple[int, Path]:
    manifest = tmp_path / "m.parquet"
    row = {"job_id": "pro", "prompt": "a lamp", "two_stage": True, "width": 256, "height": 256, "num_frames": 9, "steps": 2}
    write_manifest([row], str(manifest))
    out = tmp_path / f"out-{uuid.uuid4().hex[:6]}"
    return main(["run", str(manifest), "--out", str(out), "--model", str(model), *flags]), out


def test_two_stage_without_the_stage_2_lora_is_fatal_and_distilled_lora_names_another(ray_local, twin, tmp_path, capsys):
    folder = tmp_path / "ltx-2-no-lora"
    shutil.copytree(twin, folder)
    moved = tmp_path / "elsewhere" / "my-stage2.safetensors"
    moved.parent.mkdir()
    (folder / LORA_20).rename(moved)

    code, out = run_cli(tmp_path, folder)
    assert code == 2 and str(folder / LORA_20) in capsys.readouterr().err
    assert not (out / "results").exists()  # before any row ran

    code, out = run_cli(tmp_path, folder, "--distilled-lora", str(moved))
    assert code == 0, capsys.readouterr()
    sidecar = json.loads((out / "pro.json").read_text())
    assert sidecar["generation"]["distilled_lora"] == "my-stage2.safetensors"
    assert sidecar["generation"]["stages"][1]["lora"] == "my-stage2.safetensors"
    assert sidecar["job"]["distilled_lora"] == "my-stage2.safetensors"  # in the job hash too


def test_a_replica_without_the_stage_2_lora_fails_a_two_stage_job_before_stage_1_runs():
    """Serve has no driver-side check: a request reaches the replica, which must not refine without it."""
    from ltx_ray.engine.stages import Stages

    stages = Stages(None, upsampler_dir=None, distilled_lora=None, loras=None, dtype=None, placement=None, max_refine_tokens=1)
    job = ManifestRow(job_id="p", prompt="p", two_stage=True, width=128, height=128, num_frames=9).resolve(PROFILES["ltx-2.0-dev"])
    with pytest.raises(RuntimeError, match=f"stage-2 LoRA {LORA_20}, which this model lacks"):
        stages.run(None, job, {}, [])  # no pipeline: nothing may run first


@pytest.mark.e2e  # builds (once, cached) the 2.0 twin
def test_a_distilled_lora_on_a_distilled_profile_is_refused_with_the_reason(twin):
    with pytest.raises(ModelNotFound, match="a distilled transformer refines without a LoRA"):
        resolve_model(str(twin), profile="ltx-2.0-distilled", distilled_lora=str(twin / LORA_20))


@pytest.mark.e2e  # builds (once, cached) the 2.0 twin
def test_an_override_that_is_not_there_is_named_in_the_fatal_error(twin, tmp_path):
    model = resolve_model(str(twin), upsampler=str(tmp_path / "no-upsampler"))
    jobs = [ManifestRow(job_id="p", prompt="p", two_stage=True, width=128, height=128, num_frames=9).resolve(model.profile)]
    with pytest.raises(ModelNotFound, match=re.escape(str(tmp_path / "no-upsampler"))):
        check_companions(model, jobs)


@pytest.mark.e2e  # builds (once, cached) the 2.0 twin
def test_a_model_folder_missing_a_component_is_fatal_naming_folder_and_component(twin, tmp_path, capsys):
    folder = tmp_path / "ltx-2-no-vae"
    shutil.copytree(twin, folder)
    shutil.rmtree(folder / "vae")
    code, out = run_cli(tmp_path, folder)
    err = capsys.readouterr().err
    assert code == 2 and "vae/ (AutoencoderKLLTX2Video)" in err and str(folder) in err, err
    assert not (out / "results").exists()
