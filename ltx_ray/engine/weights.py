"""Where the weights come from: ``tiny`` (built locally), a local dir, an fsspec URI or a hub id.

Whatever the source, the result is a diffusers-format directory (or a hub id) that
``LTX2Engine`` loads with ``from_pretrained``: the tiny model takes the same path as real
weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import fsspec

from ltx_ray.engine.tiny_model import CARD_NAME, TINY_MODEL_ID, TINY_MODEL_REVISION, make_tiny_model
from ltx_ray.errors import ModelNotFound
from ltx_ray.schema.model import ResolvedModel
from ltx_ray.schema.profiles import PROFILES, TINY, ModelProfile

TINY_PROFILE = TINY
# The public diffusers repos (diffusers docs, ltx2.md), for a hub id that is not downloaded yet.
HUB_PROFILES = {
    "Lightricks/LTX-2": "ltx-2.0-dev",
    "diffusers/LTX-2.3-Diffusers": "ltx-2.3-dev",
    "Lightricks/LTX-2.5-Diffusers": "ltx-2.5-distilled",
}
PROFILE_HELP = (
    f"profiles: {', '.join(PROFILES)}; name one with --profile or write "
    f'{{"profile": "<name>"}} to {CARD_NAME} in the model folder'
)


def cache_root() -> Path:
    return Path(os.environ.get("LTX_RAY_CACHE", Path.home() / ".cache" / "ltx-ray"))


def resolve_model(source: str, profile: str | None = None) -> ResolvedModel:
    """Turn ``--model`` into a loadable location and its profile, building or copying into the cache as needed."""
    resolved = _resolve_location(source, profile)
    if profile is not None:
        resolved.profile = named_profile(profile, f"--profile {profile!r}")
    return resolved


def named_profile(name: str, where: str) -> ModelProfile:
    if name not in PROFILES:
        raise ModelNotFound(f"{where}: no profile of that name; {PROFILE_HELP}")
    return PROFILES[name]


def detect_profile(path: Path, card: dict) -> ModelProfile:
    """The profile of a diffusers-format LTX-2 folder, from its configs (no weights are read).

    - text encoder Gemma 4 (``gemma4_unified``): LTX-2.5, whose ``transformer/`` is distilled;
    - transformer with gated attention (new in 2.3's config): LTX-2.3, else LTX-2.0;
    - a scheduler that does not shift (``use_dynamic_shifting`` false): a distilled checkpoint
      (diffusers' conversion script writes it so for distilled files), else dev.
    """
    if card.get("profile"):
        return named_profile(card["profile"], f"{path / CARD_NAME} names profile {card['profile']!r}")
    if card.get("model_id") == TINY_MODEL_ID:
        return TINY
    index = _read_json(path / "model_index.json")
    transformer = _read_json(path / "transformer" / "config.json")
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
    if index.get("_class_name") != "LTX2Pipeline" or transformer.get("_class_name") != "LTX2VideoTransformer3DModel":
        raise ModelNotFound(
            f"--model {str(path)!r}: model_index.json names {index.get('_class_name')!r} with transformer "
            f"{transformer.get('_class_name')!r}, not an LTX-2 (LTX2Pipeline) folder ltx-ray knows; {PROFILE_HELP}"
        )
    text_encoder = (index.get("text_encoder") or [None, None])[1] or ""
    if text_encoder.startswith("Gemma4"):
        return PROFILES["ltx-2.5-distilled"]
    generation = "ltx-2.3" if transformer.get("gated_attn") else "ltx-2.0"
    variant = "dev" if scheduler.get("use_dynamic_shifting") else "distilled"
    return PROFILES[f"{generation}-{variant}"]


def check_companions(model: ResolvedModel, jobs) -> None:
    """Two-stage jobs need the x2 upsampler and, on a dev model, the stage-2 distilled LoRA,
    under the names the profile gives: a fatal error before any GPU starts, naming the file."""
    two_stage = [j for j in jobs if j.two_stage]
    root = Path(model.path)
    if not two_stage or not root.is_dir():
        return  # nothing to check, or a hub id that from_pretrained fetches
    missing = []
    if not (root / model.profile.upsampler).is_dir():
        missing.append(f"{model.profile.upsampler}/ (the x2 latent upsampler)")
    lora = model.profile.distilled_lora
    if any(j.distilled_lora for j in two_stage) and lora and not (root / lora).exists():
        missing.append(f"{lora} (the stage-2 distilled LoRA)")
    if missing:
        raise ModelNotFound(
            f"{len(two_stage)} two-stage job(s) (first: {two_stage[0].job_id!r}) on profile {model.profile.name} need "
            f"{' and '.join(missing)} in {root}; put it there or set two_stage false"
        )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _resolve_location(source: str, profile: str | None) -> ResolvedModel:
    if source == "tiny":
        path = cache_root() / "models" / f"tiny-ltx2-r{TINY_MODEL_REVISION}"
        if not (path / CARD_NAME).exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                make_tiny_model(path)
            except OSError:
                # Another worker built it at the same moment; its rename won.
                if not (path / CARD_NAME).exists():
                    raise
        return ResolvedModel(
            source=source, path=str(path), model_id=TINY_MODEL_ID, revision=TINY_MODEL_REVISION, profile=TINY
        )
    if "://" in source and not source.startswith("file://"):
        path = _copy_to_cache(source)
        return _from_dir(source, path)
    local = Path(source.removeprefix("file://")).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").exists():
            raise ModelNotFound(f"--model {source!r} is a folder without model_index.json; give a diffusers-format LTX-2 folder")
        return _from_dir(source, local)
    if source.count("/") == 1 and not local.exists() and not source.startswith((".", "/")):
        # A hub id: from_pretrained fetches it (needs network and, for Gemma, a token).
        if source not in HUB_PROFILES and profile is None:
            raise ModelNotFound(f"--model {source!r}: a hub id ltx-ray has no profile for; {PROFILE_HELP}")
        return ResolvedModel(source=source, path=source, model_id=source, revision="main",
                             profile=named_profile(profile or HUB_PROFILES[source], f"--model {source!r}"))
    raise ModelNotFound(f"--model {source!r} is neither 'tiny', a local folder, an object-store URI nor a hub id (org/name)")


def _from_dir(source: str, path: Path) -> ResolvedModel:
    card = {}
    if (path / CARD_NAME).exists():
        card = json.loads((path / CARD_NAME).read_text())
    profile = detect_profile(path, card)
    return ResolvedModel(
        source=source,
        path=str(path),
        model_id=card.get("model_id", source),
        revision=str(card.get("revision", _dir_fingerprint(path))),
        profile=profile,
    )


def _dir_fingerprint(path: Path) -> str:
    """A revision for a folder without a card: hash of model_index.json."""
    return hashlib.sha256((path / "model_index.json").read_bytes()).hexdigest()[:12]


def _copy_to_cache(uri: str) -> Path:
    """Copy a diffusers folder from object storage into the local cache, once."""
    dest = cache_root() / "models" / ("remote-" + hashlib.sha256(uri.encode()).hexdigest()[:16])
    if (dest / "model_index.json").exists():
        return dest
    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(f"{root.rstrip('/')}/model_index.json"):
        raise ModelNotFound(f"--model {uri!r} has no model_index.json; give the URI of a diffusers-format folder")
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fs.get(root.rstrip("/") + "/", str(tmp), recursive=True)
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
