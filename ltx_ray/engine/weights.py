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
from ltx_ray.schema.model import ModelDefaults, ResolvedModel

TINY_DEFAULTS = ModelDefaults(
    steps=4,
    guidance_scale=3.0,
    # The tiny transformer has 2 blocks; LTX-2.0's spatio-temporal guidance block is 28.
    call_kwargs={"spatio_temporal_guidance_blocks": [1], "max_sequence_length": 128},
)


def cache_root() -> Path:
    return Path(os.environ.get("LTX_RAY_CACHE", Path.home() / ".cache" / "ltx-ray"))


def resolve_model(source: str) -> ResolvedModel:
    """Turn ``--model`` into a loadable location, building or copying into the cache as needed."""
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
            source=source, path=str(path), model_id=TINY_MODEL_ID, revision=TINY_MODEL_REVISION, defaults=TINY_DEFAULTS
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
        return ResolvedModel(source=source, path=source, model_id=source, revision="main", defaults=ModelDefaults())
    raise ModelNotFound(f"--model {source!r} is neither 'tiny', a local folder, an object-store URI nor a hub id (org/name)")


def _from_dir(source: str, path: Path) -> ResolvedModel:
    card = {}
    if (path / CARD_NAME).exists():
        card = json.loads((path / CARD_NAME).read_text())
    defaults = TINY_DEFAULTS if card.get("model_id") == TINY_MODEL_ID else ModelDefaults(**card.get("defaults", {}))
    return ResolvedModel(
        source=source,
        path=str(path),
        model_id=card.get("model_id", source),
        revision=str(card.get("revision", _dir_fingerprint(path))),
        defaults=defaults,
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
