"""Recipes (``pipelines/*.yaml``): turn each row of a product table into generation jobs.

A recipe is YAML validated by ``Recipe`` (every error at once, each naming its key path).
Each of its ``variants`` makes one job per product row: prompt templates over the product
columns (``"A {title} in {color}"``), a task, a keyframe layout, job settings, QC
thresholds, and a job id derived from the product key and the variant (``SNK-001-turn``),
so the same product gives the same job id in every run (and resume works). A recipe without
variants passes plain manifest rows through, filling their empty cells from ``defaults``.

The expanded rows are ordinary manifest rows: ``ltx-ray expand`` writes them as a manifest,
``ltx-ray run --recipe`` writes them under ``{out}/_runs/{run_id}/`` and runs that.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from ltx_ray.errors import RecipeError
from ltx_ray.schema.fields import DEFAULT_FPS, DEFAULT_NUM_FRAMES, frames_for_seconds
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.problems import RowProblem
from ltx_ray.schema.qc import QCConfig

# Manifest fields a recipe sets per job; the rest are built from templates (prompt, image,
# keyframes), the recipe (qc, metadata) or the product key (job_id).
_BUILT = {"job_id", "prompt", "task", "image_uri", "keyframes", "metadata", "qc"}
# Borrow every other ManifestRow field with its type, bounds and description, so a field
# added to the manifest schema (preset, loras, ...) is settable from recipes at once.
JobSettings = create_model(
    "JobSettings",
    __config__=ConfigDict(extra="forbid"),
    **{name: (f.annotation, f) for name, f in ManifestRow.model_fields.items() if name not in _BUILT},
)
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
# Fields that say the same thing: a layer that sets one replaces the other from layers below.
_ALTERNATIVES = ({"num_frames", "seconds"},)


def template_fields(template: str) -> list[str]:
    """The column names a template uses; only plain ``{name}`` placeholders are allowed."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                             "must be a plain column name such as {title}")
        names.append(name)
    return names


def _check_template(value: str | None) -> str | None:
    if value is not None:
        try:
            template_fields(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return value


class KeyframeSlot(BaseModel):
    """One image of a keyframe layout: which product image, and where in the clip."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Template of the image URI, e.g. '{image_front}'; relative paths follow the manifest.")
    frame: int | None = Field(default=None, ge=0, description="Output frame index; give this or `at`.")
    at: float | None = Field(default=None, ge=0, le=1, description="Position as a fraction of the clip (0 first frame, 1 last).")
    strength: float = Field(default=1.0, ge=0, le=1, description="How strongly the frame follows the image.")

    _template = field_validator("image")(classmethod(lambda cls, v: _check_template(v)))

    @model_validator(mode="after")
    def _one_position(self) -> KeyframeSlot:
        if (self.frame is None) == (self.at is None):
            raise ValueError("give exactly one of frame (an index) or at (0..1)")
        return self


class Variant(JobSettings):
    """One job per product row: its name (part of the job id), templates and settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$", description="Short name; the job id is built from it.")
    task: Literal["t2v", "i2v", "keyframes"] | None = Field(default=None, description="Inferred from image/keyframes when absent.")
    prompt: str = Field(min_length=1, description="Prompt template over the product columns, e.g. 'A {title} turning'.")
    audio_prompt: str | None = Field(default=None, description="Sound template appended to the prompt when audio is on.")
    image: str | None = Field(default=None, description="i2v first-frame image template, e.g. '{image_front}'.")
    keyframes: list[KeyframeSlot] | None = Field(default=None, description="Keyframe layout.")
    qc: QCConfig | None = Field(default=None, description="Overrides the recipe's qc for this variant.")

    _templates = field_validator("prompt", "audio_prompt", "image")(classmethod(lambda cls, v: _check_template(v)))


class Recipe(BaseModel):
    """A ``pipelines/*.yaml`` file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The recipe's name (recorded in each job's metadata).")
    description: str = Field(default="", description="What the recipe makes, in a sentence.")
    key: str | None = Field(default=None, description="Product column that names a product (e.g. sku); needed with variants.")
    job_id: str = Field(default="{key}-{variant}", description="Job id template: product columns, {key}, {variant}.")
    metadata_columns: list[str] = Field(default_factory=list, description="Product columns copied into each job's metadata.")
    defaults: JobSettings = Field(default_factory=JobSettings, description="Job settings for every job (variants override).")
    qc: QCConfig | None = Field(default=None, description="Quality checks for every job; absent: no checks.")
    variants: list[Variant] = Field(default_factory=list, description="Jobs per product row; empty: rows are manifest rows.")

    _template = field_validator("job_id")(classmethod(lambda cls, v: _check_template(v)))

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.variants and not self.key:
            raise ValueError("key: recipes with variants need the product column that names each product, e.g. key: sku")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants: names {names} repeat; every variant needs its own name (it is part of the job id)")
        return self

    def columns(self) -> set[str]:
        """Every product column the recipe reads."""
        used = set(self.metadata_columns) | ({self.key} if self.key else set())
        used |= set(template_fields(self.job_id)) - {"key", "variant"}
        for v in self.variants:
            for t in (v.prompt, v.audio_prompt, v.image, *[k.image for k in v.keyframes or []]):
                used |= set(template_fields(t)) if t else set()
        return used


def load_recipe(path: str) -> Recipe:
    """Read and validate a recipe; every problem is reported at once in one ``RecipeError``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise RecipeError(f"recipe {path!r} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path!r} must be a YAML mapping (name:, variants:, ...)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise RecipeError(f"recipe {path!r} has {len(lines)} problem(s):\n" + "\n".join(lines)) from None
    # Settings go through the manifest's own checks (multiples of 32, 8k + 1 frames, ...).
    problems = []
    for where, settings in [("defaults", recipe.defaults)] + [(f"variants.{i}", v) for i, v in enumerate(recipe.variants)]:
        merged = merge_settings(_set(recipe.defaults), _set(settings, JobSettings))
        try:
            ManifestRow.model_validate({"job_id": "recipe-check", "prompt": "check", **merged})
        except ValidationError as exc:
            problems += [f"  {where}.{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
                         f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
    for i, variant in enumerate(recipe.variants):
        frames = layout_frames(variant, merge_settings(_set(recipe.defaults), _set(variant, JobSettings)))
        if len(set(frames)) != len(frames):
            problems.append(f"  variants.{i}.keyframes: land on frames {frames}, so some share a frame; "
                            "use fewer keyframes or more frames (num_frames/seconds)")
    if problems:
        raise RecipeError(f"recipe {path!r} has {len(problems)} problem(s):\n" + "\n".join(problems))
    return recipe


def merge_settings(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; setting ``num_frames`` drops a lower layer's ``seconds`` and vice versa."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for group in _ALTERNATIVES:
            if group & layer.keys():
                merged = {k: v for k, v in merged.items() if k not in group}
        merged.update(layer)
    return merged


def _set(model: BaseModel, only: type[BaseModel] | None = None) -> dict[str, Any]:
    """The fields a person actually wrote (so unset ones never shadow defaults or reach rows)."""
    names = (only or type(model)).model_fields
    return {k: v for k, v in model.model_dump(exclude_unset=True, mode="json").items() if k in names}


class RecipeProblem(RowProblem):
    """A job a product row could not make, with the metadata its job would have carried."""

    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Expansion:
    """Manifest rows made from product rows, and the product rows that could not be expanded."""

    rows: list[dict] = field(default_factory=list)
    problems: list[RecipeProblem] = field(default_factory=list)


def expand(recipe: Recipe, sources: list[tuple[str, list[dict]]]) -> Expansion:
    """Every product row of every source through every variant (or through ``defaults``)."""
    missing = {}
    for source, rows in sources:
        have = set().union(*(r.keys() for r in rows)) if rows else set()
        if recipe.variants and (lack := sorted(recipe.columns() - have)):
            missing[source] = lack
    if missing:
        raise RecipeError("the manifests lack columns the recipe reads: " + "; ".join(
            f"{s} has no {', '.join(cols)}" for s, cols in missing.items()))
    out = Expansion()
    for source, rows in sources:
        for index, row in enumerate(rows):
            if recipe.variants:
                for variant in recipe.variants:
                    _expand_variant(recipe, variant, row, f"{source} row {index}", source, out)
            else:
                out.rows.append(_fill_defaults(recipe, row, source))
    return out


def _fill_defaults(recipe: Recipe, row: dict, source: str) -> dict:
    filled = merge_settings(_set(recipe.defaults), {k: v for k, v in row.items() if v is not None})
    if recipe.qc is not None and "qc" not in filled:
        filled["qc"] = recipe.qc.model_dump_json()
    return _anchor_row(filled, source)


def _expand_variant(recipe: Recipe, variant: Variant, row: dict, where: str, source: str, out: Expansion) -> None:
    key = str(row.get(recipe.key)) if row.get(recipe.key) is not None else None
    job_id = "?"
    metadata = {"recipe": recipe.name, "product": key, "variant": variant.name,
                **{c: _plain(row.get(c)) for c in recipe.metadata_columns}}
    try:
        job_id = _job_id(_render(recipe.job_id, row, "job_id", key=key, variant=variant.name))
        settings = merge_settings(_set(recipe.defaults), _set(variant, JobSettings))
        prompt = _render(variant.prompt, row, f"variants.{variant.name}.prompt")
        if variant.audio_prompt and settings.get("audio", True):
            prompt = f"{prompt.rstrip()} {_render(variant.audio_prompt, row, f'variants.{variant.name}.audio_prompt').strip()}"
        job: dict[str, Any] = {"job_id": job_id, "prompt": prompt, **settings}
        if variant.task:
            job["task"] = variant.task
        if variant.image:
            job["image_uri"] = _anchor(_render(variant.image, row, f"variants.{variant.name}.image"), source)
        if variant.keyframes:
            job["keyframes"] = _layout(variant, settings, row, source)
        qc = variant.qc or recipe.qc
        if qc is not None:
            job["qc"] = qc.model_dump_json()
        job["metadata"] = json.dumps(metadata)
        out.rows.append(job)
    except _CellProblem as p:
        out.problems.append(RecipeProblem(job_id=job_id, field=p.field, value=p.value, message=p.message, source=where,
                                          metadata=metadata))


class _CellProblem(Exception):
    def __init__(self, field: str, value: str, message: str):
        super().__init__(message)
        self.field, self.value, self.message = field, value, message


def _render(template: str, row: dict, where: str, **extra: Any) -> str:
    values = {**row, **extra}
    for name in template_fields(template):
        if values.get(name) is None:
            raise _CellProblem(name, "None", f"is empty but {where} uses {{{name}}}; fill the cell or drop the product")
    return template.format_map({k: _plain(v) for k, v in values.items()})


def _job_id(text: str) -> str:
    """A usable job id from rendered text: other characters become '-', at most 128 long."""
    slug = _SLUG.sub("-", text).strip("-._")[:128]
    if not slug:
        raise _CellProblem("job_id", repr(text), "renders to nothing usable; the key column needs letters or digits")
    return slug


def layout_frames(variant: Variant, settings: dict[str, Any]) -> list[int]:
    """Output frame of each keyframe slot: ``frame``, or ``at`` of the clip's last frame, rounded."""
    fps = settings.get("fps") or DEFAULT_FPS
    total = settings.get("num_frames") or (
        frames_for_seconds(settings["seconds"], fps) if settings.get("seconds") else DEFAULT_NUM_FRAMES)
    frames = []
    for slot in variant.keyframes or []:
        frames.append(slot.frame if slot.frame is not None else round(slot.at * (total - 1)))
    return frames


def _layout(variant: Variant, settings: dict, row: dict, source: str) -> list[dict]:
    return [
        {"uri": _anchor(_render(slot.image, row, f"variants.{variant.name}.keyframes.{i}.image"), source),
         "frame": frame, "strength": slot.strength}
        for i, (slot, frame) in enumerate(zip(variant.keyframes or [], layout_frames(variant, settings)))
    ]


def _anchor_row(row: dict, source: str) -> dict:
    row = dict(row)
    if isinstance(row.get("image_uri"), str):
        row["image_uri"] = _anchor(row["image_uri"], source)
    if isinstance(row.get("keyframes"), list):
        row["keyframes"] = [{**k, "uri": _anchor(k["uri"], source)} if isinstance(k, dict) else k for k in row["keyframes"]]
    return row


def _anchor(uri: str, source: str) -> str:
    """A relative image path follows its manifest; made absolute so the expanded manifest can live anywhere."""
    if "://" in uri or uri.startswith(("/", "~")):
        return uri
    base = source.rsplit("/", 1)[0] if "/" in source else "."
    return f"{base}/{uri}" if "://" in base else os.path.abspath(f"{base}/{uri}")


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def expand_manifests(recipe: Recipe, paths: list[str]) -> Expansion:
    """Read the product manifests named by ``paths`` (files, folders, globs, URIs) and expand them."""
    from ltx_ray.errors import ManifestError
    from ltx_ray.storage.manifest import expand_manifest_paths, read_manifest_rows

    files = expand_manifest_paths(paths)
    sources = [(uri, read_manifest_rows(uri)) for uri in files]
    if not any(rows for _, rows in sources):
        raise ManifestError(f"the manifests {', '.join(files)} hold no rows; nothing to expand")
    return expand(recipe, sources)


def run_recipe_manifest(
    recipe_path: str, manifests: list[str], out: str, run_id: str, log=print
) -> tuple[str, list[RecipeProblem]]:
    """Expand for ``ltx-ray run --recipe``: the job manifest goes to ``{out}/_runs/{run_id}/manifest.parquet``.

    Product rows that cannot be expanded become failed results rows (stage ``recipe``), so
    they show in the results and the report like any failed row; the run goes on.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ltx_ray.schema.results import ResultRow
    from ltx_ray.storage.manifest import manifest_table
    from ltx_ray.storage.results import write_result
    from ltx_ray.storage.store import OutputStore

    recipe = load_recipe(recipe_path)
    expansion = expand_manifests(recipe, manifests)
    store = OutputStore(out)
    for problem in expansion.problems:
        log(f"invalid: {problem}")
        key = problem.job_id if problem.job_id != "?" else "recipe-" + re.sub(r"[^A-Za-z0-9]+", "-", problem.source)[-80:]
        write_result(store, key, ResultRow(
            job_id=problem.job_id, status="failed", error_stage="recipe", run_id=run_id, metadata=problem.metadata,
            error=f"{problem.source}: {problem.field} = {problem.value}: {problem.message}",
        ))
    if not expansion.rows:
        raise RecipeError(f"recipe {recipe_path!r} made no jobs from {', '.join(manifests)}")
    sink = pa.BufferOutputStream()
    pq.write_table(manifest_table(expansion.rows), sink)
    uri = store.put(f"_runs/{run_id}/manifest.parquet", sink.getvalue().to_pybytes())
    log(f"recipe {recipe.name}: {len(expansion.rows)} jobs from {', '.join(manifests)} -> {uri}")
    return uri, expansion.problems
