"""Where the weights come from: ``tiny`` (built locally), a local dir, an fsspec URI or a hub id.

Whatever the source, the result is a local diffusers-format directory that ``LTX2Engine``
loads with ``from_pretrained``: the tiny model takes the same path as real weights. A hub id
or an object-store URI brings only the files the model's profile loads
(``schema/model_files.py``), companions included; ``--upsampler`` / ``--distilled-lora``
name other companion files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import fsspec

from ltx_ray.engine.tiny_model import CARD_NAME, TINY_MODEL_ID, TINY_MODEL_REVISION, make_tiny_model
from ltx_ray.errors import ModelNotFound
from ltx_ray.schema.model import ResolvedModel
from ltx_ray.schema.model_files import PROFILE_FILES, index_components, needed_patterns, select
from ltx_ray.schema.profiles import PROFILES, TINY, ModelProfile

TINY_PROFILE = TINY
# The public diffusers repos (diffusers docs, ltx2.md), named when a hub id is not one ltx-ray can load.
DIFFUSERS_REPOS = ("Lightricks/LTX-2", "diffusers/LTX-2.3-Diffusers", "Lightricks/LTX-2.5-Diffusers")
PROFILE_HELP = (
    f"profiles: {', '.join(PROFILES)}; name one with --profile or write "
    f'{{"profile": "<name>"}} to {CARD_NAME} in the model folder'
)


def cache_root() -> Path:
    return Path(os.environ.get("LTX_RAY_CACHE", Path.home() / ".cache" / "ltx-ray"))


def resolve_model(source: str, profile: str | None = None, *, upsampler: str | None = None,
                  distilled_lora: str | None = None, enhancer: str | None = None) -> ResolvedModel:
    """Turn ``--model`` into a local folder, its profile and its companions, building, copying
    or downloading into the cache as needed.

    ``upsampler`` / ``distilled_lora`` (a local path or an fsspec URI) replace the profile's
    ``latent_upsampler/`` and root stage-2 LoRA; the profile's own are then not fetched.
    ``enhancer`` (a local path or an fsspec URI): the prompt enhancer enhance_prompt rows use.
    """
    fetch = {"upsampler": upsampler is None, "distilled_lora": distilled_lora is None}
    resolved = _resolve_location(source, profile, fetch)
    if profile is not None:
        resolved.profile = named_profile(profile, f"--profile {profile!r}")
    check_components(resolved)
    resolved = _with_companions(resolved, upsampler, distilled_lora)
    return resolved.model_copy(update={"enhancer": find_enhancer(resolved, enhancer)})


def find_enhancer(model: ResolvedModel, enhancer: str | None) -> str | None:
    """Where enhance_prompt's enhancer is: ``--enhancer`` (a folder holding a processor, and for
    LTX-2.5 the Gemma 4 model too), else the model folder when model_index.json names its own
    ``processor`` (and ``prompt_enhancer``); None when there is none."""
    if enhancer is not None:
        path = Path(_companion(enhancer))
        if not (path / "processor_config.json").is_file() and not (path / "preprocessor_config.json").is_file():
            raise ModelNotFound(
                f"--enhancer {enhancer!r}: {path} holds no processor (processor_config.json); give a local copy of "
                f"{model.profile.enhancer_repo}, the enhancer profile {model.profile.name} uses"
            )
        if model.profile.enhancer == "separate" and not (path / "config.json").is_file():
            raise ModelNotFound(
                f"--enhancer {enhancer!r}: {path} holds a processor but no model (config.json); profile "
                f"{model.profile.name} rewrites prompts with a separate {model.profile.enhancer_repo}: give a local copy "
                f"of that whole repo"
            )
        return str(path)
    index = _read_json(Path(model.path) / "model_index.json")
    wanted = ["processor"] + (["prompt_enhancer"] if model.profile.enhancer == "separate" else [])
    if all((index.get(name) or [None, None])[1] for name in wanted):
        return model.path
    return None


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
    The files it reads are ``model_files.PROFILE_FILES``.
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


def check_components(model: ResolvedModel) -> None:
    """Every component model_index.json names (and 2.5 full's ``transformer_full/``) has its
    folder: a fatal error before any row runs, naming the folder and the component."""
    root = Path(model.path)
    folders = index_components(_read_json(root / "model_index.json"))
    if model.profile.transformer_subfolder != "transformer":
        folders[model.profile.transformer_subfolder] = f"the {model.profile.name} transformer"
    missing = [f"{name}/ ({cls})" for name, cls in folders.items() if not (root / name).is_dir()]
    if missing:
        raise ModelNotFound(
            f"--model {model.source!r}: {root} has no {', '.join(missing)}, which model_index.json names; "
            f"a diffusers-format LTX-2 folder holds every component's folder: copy it whole"
        )


def check_companions(model: ResolvedModel, jobs) -> None:
    """Two-stage jobs need the x2 upsampler and, on a dev model, the stage-2 distilled LoRA,
    where the profile or ``--upsampler`` / ``--distilled-lora`` put them: a fatal error before
    any GPU starts, naming the file it looked for."""
    two_stage = [j for j in jobs if j.two_stage]
    if not two_stage:
        return
    upsampler, lora = companion_paths(model)
    missing = []
    if not _is_local(upsampler, Path.is_dir):
        missing.append(f"{upsampler} (the x2 latent upsampler folder)")
    if any(j.distilled_lora for j in two_stage) and lora and not _is_local(lora, Path.is_file):
        missing.append(f"{lora} (the stage-2 distilled LoRA)")
    if missing:
        raise ModelNotFound(
            f"{len(two_stage)} two-stage job(s) (first: {two_stage[0].job_id!r}) on profile {model.profile.name} need "
            f"{' and '.join(missing)}; put it there, name it with --upsampler / --distilled-lora, or set two_stage false"
        )


def companion_paths(model: ResolvedModel) -> tuple[str, str | None]:
    """The upsampler folder and stage-2 LoRA file the engine loads (the profile's, in the folder, by default)."""
    root = Path(model.path)
    upsampler = model.upsampler or str(root / model.profile.upsampler)
    lora = model.distilled_lora
    if lora is None and model.profile.distilled_lora:
        lora = str(root / model.profile.distilled_lora)
    return upsampler, lora


def _with_companions(model: ResolvedModel, upsampler: str | None, distilled_lora: str | None) -> ResolvedModel:
    root, profile = Path(model.path), model.profile
    lora = str(root / profile.distilled_lora) if profile.distilled_lora else None
    if distilled_lora is not None:
        if profile.distilled_lora is None:
            raise ModelNotFound(
                f"--distilled-lora {distilled_lora!r} on profile {profile.name}: a distilled transformer refines "
                f"without a LoRA (Lightricks' distilled.py); drop the flag, or run a dev model"
            )
        lora = _companion(distilled_lora)
        # Jobs record (and hash) the name of the file they are made with.
        profile = profile.model_copy(update={"distilled_lora": _basename(distilled_lora)})
    up = _companion(upsampler) if upsampler else str(root / profile.upsampler)
    return model.model_copy(update={"profile": profile, "upsampler": up, "distilled_lora": lora})


def _companion(location: str) -> str:
    """A local path as given; a URI copied once into the cache (left as the URI when absent,
    for ``check_companions`` to name)."""
    if "://" not in location or location.startswith("file://"):
        return str(Path(location.removeprefix("file://")).expanduser())
    fs, remote = fsspec.core.url_to_fs(location)
    remote = remote.rstrip("/")
    dest = cache_root() / "companions" / _digest(location) / _basename(location)
    if dest.exists():
        return str(dest)
    if not fs.exists(remote):
        return location
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if fs.isdir(remote):
        fs.get(remote + "/", str(tmp), recursive=True)
    else:
        fs.get_file(remote, str(tmp))
    _publish(tmp, dest)
    return str(dest)


def _is_local(location: str, test) -> bool:
    # A URI is left as given only when it was not found: it is never a local file.
    return "://" not in location and test(Path(location))


def _basename(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _resolve_location(source: str, profile: str | None, fetch: dict[str, bool]) -> ResolvedModel:
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
        return _from_dir(source, _copy_to_cache(source, profile, fetch))
    local = Path(source.removeprefix("file://")).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").exists():
            raise ModelNotFound(f"--model {source!r} is a folder without model_index.json; give a diffusers-format LTX-2 folder")
        return _from_dir(source, local)
    if source.count("/") == 1 and not local.exists() and not source.startswith((".", "/")):
        path = _download_hub(source, profile, fetch)
        resolved = _from_dir(source, path)
        # The snapshot folder is named by its commit: the revision that was downloaded.
        return resolved.model_copy(update={"model_id": source, "revision": path.name})
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


def _profile_of(path: Path, named: str | None) -> ModelProfile:
    """The profile that chooses what to fetch: ``--profile``, else read off the configs at ``path``."""
    if named is not None:
        return named_profile(named, f"--profile {named!r}")
    return detect_profile(path, _read_json(path / CARD_NAME))


def _download_hub(repo_id: str, profile: str | None, fetch: dict[str, bool]) -> Path:
    """Download the files the profile loads from the Hub (configs first, to know the profile),
    into huggingface_hub's cache; the snapshot folder is then an ordinary local folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        configs = Path(snapshot_download(repo_id, allow_patterns=list(PROFILE_FILES)))
        if not (configs / "model_index.json").exists():
            raise ModelNotFound(
                f"--model {repo_id!r}: the repo has no model_index.json, so it is not a diffusers-format model; "
                f"the diffusers repos are {', '.join(DIFFUSERS_REPOS)}"
            )
        patterns = needed_patterns(_profile_of(configs, profile), _read_json(configs / "model_index.json"), **fetch)
        # The same commit as the configs, even if the repo moves meanwhile.
        return Path(snapshot_download(repo_id, revision=configs.name, allow_patterns=patterns))
    except (OSError, ValueError, EntryNotFoundError) as exc:
        raise ModelNotFound(
            f"--model {repo_id!r}: the Hub download failed ({type(exc).__name__}: {exc}); check the id, the network "
            f"and, for a gated repo (Gemma), HF_TOKEN"
        ) from None


def _copy_to_cache(uri: str, profile: str | None, fetch: dict[str, bool]) -> Path:
    """Copy what the profile loads from a diffusers folder on object storage into the cache, once.

    The listing gives every file's size; the configs come first (they tell the profile), then
    the selected files, after one line on stderr saying how much is copied and skipped.
    """
    dest = cache_root() / "models" / ("remote-" + _digest(json.dumps([uri, profile, fetch], sort_keys=True)))
    if (dest / "model_index.json").exists():
        return dest
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    sizes = {path[len(root) + 1:]: int(info.get("size") or 0)
             for path, info in fs.find(root, detail=True).items() if path.startswith(root + "/")}
    if "model_index.json" not in sizes:
        raise ModelNotFound(f"--model {uri!r} has no model_index.json; give the URI of a diffusers-format folder")
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _get(fs, root, [p for p in PROFILE_FILES if p in sizes], tmp)
        chosen = _profile_of(tmp, profile)
        wanted = select(sizes, needed_patterns(chosen, _read_json(tmp / "model_index.json"), **fetch))
        skipped = sorted(set(sizes) - set(wanted), key=lambda p: -sizes[p])
        print(f"--model {uri}: copying {len(wanted)} files, {_gb(sum(sizes[p] for p in wanted))}, that profile "
              f"{chosen.name} loads to {dest}; skipping {len(skipped)} files, {_gb(sum(sizes[p] for p in skipped))}"
              + (f" (largest: {', '.join(skipped[:3])})" if skipped else ""), file=sys.stderr, flush=True)
        _get(fs, root, [p for p in wanted if p not in PROFILE_FILES], tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, dest)
    return dest


def _get(fs, root: str, paths: list[str], into: Path) -> None:
    for path in paths:
        (into / path).parent.mkdir(parents=True, exist_ok=True)
    if paths:
        fs.get([f"{root}/{p}" for p in paths], [str(into / p) for p in paths])


def _publish(tmp: Path, dest: Path) -> None:
    """Rename a finished copy into place; another worker's copy that got there first wins."""
    try:
        tmp.rename(dest)
    except OSError:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
