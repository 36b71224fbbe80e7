"""Read manifests (Parquet, local or any fsspec URI) and validate every row at once.

Manifest-level problems (no such file, not Parquet, no rows) are fatal: ``ManifestError``.
Row-level problems are collected, every one of them, as ``RowProblem``s; the valid rows
go on as resolved ``Job``s.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ltx_ray.errors import ManifestError
from ltx_ray.schema.columns import columns
from ltx_ray.schema.fields import JOB_ID_PATTERN
from ltx_ray.schema.job import Job
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.profiles import ModelProfile, variant_profile
from ltx_ray.schema.problems import RowProblem, problems_from_validation_error
from ltx_ray.schema.schedules import DISTILLED_SIGMAS
from ltx_ray.storage.arrow import arrow_type

PASSTHROUGH_PREFIX = "x_"


# Each column's Parquet type, derived from its ManifestRow field (ltx_ray.schema.columns).
MANIFEST_ARROW_TYPES = {c.name: arrow_type(c.type) for c in columns(ManifestRow)}


def manifest_table(rows: list[dict]) -> pa.Table:
    """Rows as a manifest table with the schema's Parquet types (other columns inferred)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({col: pa.array([row.get(col) for row in rows], type=MANIFEST_ARROW_TYPES.get(col)) for col in columns})


def write_manifest(rows: list[dict], uri: str) -> str:
    """Write rows as a manifest with the schema's Parquet types (other columns inferred)."""
    fs, path = fsspec.core.url_to_fs(uri, auto_mkdir=True) if "://" not in uri else fsspec.core.url_to_fs(uri)
    with fs.open(path, "wb") as fh:
        pq.write_table(manifest_table(rows), fh)
    return uri


@dataclass
class InvalidRow:
    """A row that failed validation; it still gets a failed results row."""

    key: str  # stable name for its result file, even when job_id itself is unusable
    job_id: str
    problems: list[RowProblem]
    metadata: str | None = None


@dataclass
class ValidatedManifest:
    jobs: list[Job] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[RowProblem]:
        return [p for row in self.invalid for p in row.problems]


def expand_manifest_paths(paths: list[str]) -> list[str]:
    """Files, directories and globs, local or remote, to a sorted list of Parquet URIs."""
    out: list[str] = []
    for path in paths:
        fs, root = fsspec.core.url_to_fs(path)
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol

        def unstrip(p: str, protocol: str = protocol) -> str:
            return p if protocol in ("file", "local") else f"{protocol}://{p}"

        if any(ch in root for ch in "*?["):
            found = sorted(fs.glob(root))
        elif fs.isdir(root):
            found = sorted(p for p in fs.find(root) if p.endswith(".parquet") and "/_" not in p[len(root) :])
        elif fs.exists(root):
            found = [root]
        else:
            raise ManifestError(f"manifest {path!r} does not exist; check the path or URI")
        if not found:
            raise ManifestError(f"manifest {path!r} matches no Parquet file; point at a .parquet file or a folder of them")
        out.extend(unstrip(p) for p in found)
    return out


def read_manifest_rows(uri: str) -> list[dict]:
    """All rows of one Parquet manifest as plain Python dicts."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        # Through the filesystem, not an open Python file: pyarrow 26 reading a Python file
        # object with its thread pool aborts the interpreter at exit ("terminate called
        # without an active exception", exit 134) about half the time.
        table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {uri!r} is not a readable Parquet file ({exc}); write it with pyarrow or pandas.to_parquet") from None
    return table.to_pylist()


def validate_rows(
    rows_by_source: list[tuple[str, list[dict]]], defaults: ModelProfile, enhancer: bool = True
) -> ValidatedManifest:
    """Validate every row of every manifest; report all problems, never stop at the first.
    ``enhancer`` False: the run has no prompt enhancer (a run knows; ``validate`` does not check)."""
    result = ValidatedManifest(sources=[s for s, _ in rows_by_source])
    seen: dict[str, str] = {}
    for source, rows in rows_by_source:
        for index, raw in enumerate(rows):
            where = f"{source} row {index}"
            row = {k: v for k, v in raw.items() if not k.startswith(PASSTHROUGH_PREFIX)}
            row = _anchor_relative_uris(row, source)
            # A null cell is the column's default: drop it before validation.
            row = {k: v for k, v in row.items() if v is not None}
            passthrough = {k: v for k, v in raw.items() if k.startswith(PASSTHROUGH_PREFIX)}
            key = _row_key(source, index, raw.get("job_id"))
            try:
                parsed = ManifestRow.model_validate(row)
            except ValidationError as exc:
                result.invalid.append(
                    InvalidRow(
                        key=key,
                        job_id=str(raw.get("job_id")),
                        problems=problems_from_validation_error(row, exc, source=where),
                        metadata=raw.get("metadata") if isinstance(raw.get("metadata"), str) else None,
                    )
                )
                continue
            if parsed.job_id in seen:
                problem = RowProblem(
                    job_id=parsed.job_id,
                    field="job_id",
                    value=repr(parsed.job_id),
                    message=f"duplicate job_id, first used at {seen[parsed.job_id]}; give every row its own job_id",
                    source=where,
                )
                # Its own results key: the first row with this job_id may already have succeeded.
                digest = hashlib.sha256(where.encode()).hexdigest()[:12]
                result.invalid.append(InvalidRow(key=f"{key}.duplicate-{digest}", job_id=parsed.job_id, problems=[problem]))
                continue
            seen[parsed.job_id] = where
            job = parsed.resolve(defaults)
            problem = model_problem(parsed, job, defaults, where, enhancer)
            if problem is not None:
                result.invalid.append(InvalidRow(key=key, job_id=parsed.job_id, problems=[problem]))
                continue
            job.passthrough = {k: _jsonable(v) for k, v in passthrough.items()}
            result.jobs.append(job)
    return result


def model_problem(row: ManifestRow, job: Job, profile: ModelProfile, where: str, enhancer: bool) -> RowProblem | None:
    """A valid row (resolved as ``job``) that the model loaded as ``profile`` cannot run as asked;
    ``enhancer``: a prompt enhancer is loaded. Batch validation and the Serve worker both ask."""
    return _variant_problem(row, profile, where) or _capability_problem(job, profile, where, enhancer)


def _variant_problem(row: ManifestRow, profile: ModelProfile, where: str) -> RowProblem | None:
    if variant_profile(profile, row.variant) is not None:
        return None
    return RowProblem(
        job_id=row.job_id, field="variant", value=repr(row.variant), source=where,
        message=f"profile {profile.name} is one {profile.variant} checkpoint; only LTX-2.5 ships both DiTs (distilled "
                f"and full): leave variant empty, or run these rows on a {row.variant} checkpoint of their own",
    )


def _capability_problem(job: Job, profile: ModelProfile, where: str, enhancer: bool) -> RowProblem | None:
    if job.schedule == "distilled" and job.steps != len(DISTILLED_SIGMAS):
        return RowProblem(
            job_id=job.job_id, field="steps", value=repr(job.steps), source=where,
            message=f"profile {job.profile} runs its {len(DISTILLED_SIGMAS)} distilled sigmas; leave steps empty "
                    f"or set it to {len(DISTILLED_SIGMAS)}",
        )
    if job.auto_seconds is not None and not profile.duration_head:
        return RowProblem(
            job_id=job.job_id, field="seconds", value="'auto'", source=where,
            message=f"profile {profile.name} has no duration head to pick the length (LTX-2.5 models have one); "
                    "give seconds as a number or num_frames",
        )
    if job.decoder == "diffusion" and not profile.diffusion_decoder:
        return RowProblem(
            job_id=job.job_id, field="decoder", value="'diffusion'", source=where,
            message=f"profile {profile.name} has no diffusion decoder (LTX-2.5 models have one); set decoder to conv "
                    "or leave it empty",
        )
    if job.enhance_prompt and not enhancer:
        return RowProblem(
            job_id=job.job_id, field="enhance_prompt", value="True", source=where,
            message=f"profile {profile.name} has no prompt enhancer here: pass --enhancer with a local copy of "
                    f"{profile.enhancer_repo} ({ENHANCER_NEEDS[profile.enhancer]}), or set enhance_prompt false",
        )
    return None


# What --enhancer must hold, by the profile's kind of enhancer.
ENHANCER_NEEDS = {"text_encoder": "its processor: the model's Gemma 3 text encoder does the rewriting",
                  "separate": "the Gemma 4 model and its processor"}


def _anchor_relative_uris(row: dict, source: str) -> dict:
    """Relative input paths are relative to the manifest's folder, not to the current directory."""
    base = source.rsplit("/", 1)[0] if "/" in source else "."

    def anchor(uri):
        if not isinstance(uri, str) or not uri or "://" in uri or uri.startswith(("/", "~")):
            return uri
        return f"{base}/{uri}"

    row = dict(row)
    for name in ("image_uri", "video_uri", "audio_uri", "control_uri", "ic_lora"):
        if name in row:
            row[name] = anchor(row[name])
    for name in ("keyframes", "loras"):
        if isinstance(row.get(name), list):
            row[name] = [{**k, "uri": anchor(k.get("uri"))} if isinstance(k, dict) else k for k in row[name]]
    return row


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def _row_key(source: str, index: int, job_id) -> str:
    """Results file name for a row: its job_id when usable, else a stable hash of where it is."""
    # fullmatch: "$" in a pattern would also accept a trailing newline
    if isinstance(job_id, str) and re.fullmatch(JOB_ID_PATTERN.strip("^$"), job_id):
        return job_id
    digest = hashlib.sha256(f"{source}#{index}".encode()).hexdigest()[:16]
    return f"invalid-row-{digest}"


def load_and_validate(paths: list[str], defaults: ModelProfile, enhancer: bool = True) -> ValidatedManifest:
    """Read every manifest named by ``paths`` and validate all its rows."""
    files = expand_manifest_paths(paths)
    rows_by_source = [(uri, read_manifest_rows(uri)) for uri in files]
    if not any(rows for _, rows in rows_by_source):
        raise ManifestError(f"the manifests {', '.join(files)} hold no rows; nothing to generate")
    return validate_rows(rows_by_source, defaults, enhancer)
