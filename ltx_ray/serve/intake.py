"""A create request (form fields + file parts, or JSON) -> a validated ManifestRow.

Values arrive as text ("24.0", "true", JSON strings for structured fields): they are parsed
leniently here and validated strictly by ``ManifestRow``, the same rules as manifest rows.
The mapping is generic over ``ManifestRow.model_fields``: a new manifest field is accepted
by the API without a change here. API-only names:

    size "WxH" -> width, height        num_inference_steps -> steps
    seconds -> seconds (ignored for num_frames when num_frames is given)
    input_reference (file part or http(s) URL) -> image_uri
    {X}_uri fields: a file part named X or {X}_uri, or an http(s) URL in {X}_url / {X}_uri
    keyframes: JSON list of {frame_index, image_url | file, strength} + repeated file parts
    lora -> loras (when the manifest has it)      extra_params: a JSON object of more fields
    model -> the Video's model (not a generation parameter)

Inputs (files and URLs) are first validated with placeholder URIs, so a bad request costs no
download; ``Intake.inputs`` lists what the service must fetch and store.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.problems import problems_from_validation_error
from ltx_ray.serve.protocol import APIError

RENAMED = {"num_inference_steps": "steps"}
SERVER_OWNED = {"job_id"}
PLACEHOLDER = "memory://ltx-ray-pending"


@dataclass
class Upload:
    """One file part of a multipart request."""

    filename: str
    content_type: str | None
    data: bytes


@dataclass
class InputRef:
    """An input the service must store: where it goes in the row, and where it comes from."""

    path: tuple  # ("image_uri",) or ("keyframes", 2, "uri")
    param: str  # the request parameter, for errors
    upload: Upload | None = None
    url: str | None = None
    is_image: bool = True


@dataclass
class Intake:
    """A parsed create request."""

    row: dict[str, Any]
    model: str | None
    seconds: str | None
    inputs: list[InputRef] = field(default_factory=list)
    api_names: dict[str, str] = field(default_factory=dict)  # manifest field -> request param

    def param(self, manifest_field: str) -> str:
        head = manifest_field.split(".", 1)[0]
        return self.api_names.get(head, RENAMED_BACK.get(head, head)) + manifest_field[len(head):]


RENAMED_BACK = {v: k for k, v in RENAMED.items()}


def _structured(annotation: Any) -> bool:
    """Whether a field holds a list, dict or model (sent as JSON text in a form)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_structured(a) for a in typing.get_args(annotation))
    if origin in (list, dict, tuple, set):
        return True
    return isinstance(annotation, type) and (issubclass(annotation, (BaseModel, list, dict)))


def _json(value: Any, param: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise APIError(400, f"{param}: is not valid JSON ({exc.msg}); send a JSON-encoded value", param=param,
                       code="invalid_json") from None


def _parse_size(value: Any) -> tuple[str, str]:
    text = str(value).strip().lower()
    width, sep, height = text.partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise APIError(400, f"size = {value!r}: must be WIDTHxHEIGHT such as '768x512'", param="size", code="invalid_size")
    return width.strip(), height.strip()


def parse_create(fields: dict[str, Any], files: dict[str, list[Upload]], *, max_prompt_chars: int) -> Intake:
    """Map a create request onto a ManifestRow dict (not yet validated)."""
    model_fields = ManifestRow.model_fields
    fields = {k: v for k, v in fields.items() if v is not None and v != ""}
    if "extra_params" in fields:
        extra = _json(fields.pop("extra_params"), "extra_params")
        if not isinstance(extra, dict):
            raise APIError(400, "extra_params: must be a JSON object", param="extra_params", code="invalid_json")
        fields = {**extra, **fields}  # flat fields win over extra_params
    prompt = fields.get("prompt")
    if isinstance(prompt, str) and len(prompt) > max_prompt_chars:
        raise APIError(400, f"prompt: {len(prompt)} characters is more than this server's {max_prompt_chars}; "
                       "shorten it", param="prompt", code="prompt_too_long")
    intake = Intake(row={}, model=fields.pop("model", None), seconds=None)
    if intake.model is not None:
        intake.model = str(intake.model)[:256]

    if "size" in fields:
        for name in ("width", "height"):
            if name in fields:
                raise APIError(400, f"{name}: is given together with size; give one of them", param=name,
                               code="conflicting_parameters")
        intake.row["width"], intake.row["height"] = _parse_size(fields.pop("size"))
        intake.api_names.update(width="size", height="size")
    if "seconds" in fields:
        intake.seconds = str(fields["seconds"])
        if "num_frames" in fields:
            fields.pop("seconds")  # the convention: seconds x fps only when num_frames is absent

    _take_uri_inputs(intake, fields, files, model_fields)
    if "keyframes" in fields or "keyframes" in files:
        _take_keyframes(intake, fields.pop("keyframes", None), files.pop("keyframes", []))
    if "lora" in fields:
        if "loras" not in model_fields:
            raise APIError(400, "lora: this server's manifest schema has no LoRA support yet", param="lora",
                           code="unsupported_parameter")
        lora = _json(fields.pop("lora"), "lora")
        intake.row["loras"] = lora if isinstance(lora, list) else [lora]
        intake.api_names["loras"] = "lora"

    for name, value in fields.items():
        target = RENAMED.get(name, name)
        if target in SERVER_OWNED or target not in model_fields:
            raise APIError(400, f"{name}: is not a parameter of POST /v1/videos", param=name, code="unknown_parameter")
        intake.row[target] = _json(value, name) if _structured(model_fields[target].annotation) else value
    for name in files:
        raise APIError(400, f"{name}: is not a file parameter; send input_reference or keyframes", param=name,
                       code="unknown_parameter")
    return intake


def _take_uri_inputs(intake: Intake, fields: dict, files: dict, model_fields) -> None:
    """input_reference and every other {X}_uri manifest field, as a file part or an http(s) URL."""
    for target in [f for f in model_fields if f.endswith("_uri")]:
        base = target[: -len("_uri")]
        names = ["input_reference"] if target == "image_uri" else []
        # A bare "video" / "audio" names a file part only, and only when no manifest field
        # has that name (control is a mode, control_uri its file).
        bare = [base] if base not in model_fields else []
        names += bare + [target, f"{base}_url"]
        for name in names:
            upload = files.pop(name, None)
            text = fields.pop(name, None) if name not in bare else None
            if upload is None and text is None:
                continue
            if target in intake.row:
                raise APIError(400, f"{name}: {target} is already given by another parameter", param=name,
                               code="conflicting_parameters")
            if upload is not None:
                if len(upload) != 1:
                    raise APIError(400, f"{name}: send one file", param=name, code="invalid_file")
                ref = InputRef(path=(target,), param=name, upload=upload[0], is_image=target == "image_uri")
            else:
                if isinstance(text, dict):  # {"image_url": ...} as newer clients send it
                    text = text.get("image_url") or text.get("url")
                ref = InputRef(path=(target,), param=name, url=str(text), is_image=target == "image_uri")
            intake.inputs.append(ref)
            intake.row[target] = f"{PLACEHOLDER}/{target}"
            intake.api_names[target] = name


def _take_keyframes(intake: Intake, spec: Any, uploads: list[Upload]) -> None:
    entries = _json(spec, "keyframes") if spec is not None else [{"frame_index": 0}] if len(uploads) == 1 else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise APIError(400, "keyframes: must be a JSON list of {frame_index, image_url | file, strength}",
                       param="keyframes", code="invalid_keyframes")
    by_name = {u.filename: u for u in uploads}
    unnamed = iter(uploads)
    used: set[int] = set()
    row = []
    for i, entry in enumerate(entries):
        param = f"keyframes[{i}]"
        entry = dict(entry)
        frame = entry.pop("frame_index", entry.pop("frame", None))
        url = entry.pop("image_url", entry.pop("url", None))
        ref_file = entry.pop("file", None)
        item: dict[str, Any] = {"frame": frame, "uri": f"{PLACEHOLDER}/keyframes/{i}"}
        if "strength" in entry:
            item["strength"] = entry.pop("strength")
        if entry:
            raise APIError(400, f"{param}: unknown keys {sorted(entry)}; use frame_index, image_url or file, strength",
                           param=param, code="invalid_keyframes")
        if url is not None:
            ref = InputRef(path=("keyframes", i, "uri"), param=f"{param}.image_url", url=str(url))
        else:
            if isinstance(ref_file, int) and 0 <= ref_file < len(uploads):
                upload = uploads[ref_file]
            elif isinstance(ref_file, str) and ref_file in by_name:
                upload = by_name[ref_file]
            elif ref_file is None:
                upload = next((u for u in unnamed if id(u) not in used), None)
            else:
                upload = None
            if upload is None:
                raise APIError(400, f"{param}: no file part for it; send one 'keyframes' file part per keyframe "
                               "or an image_url", param=param, code="invalid_keyframes")
            used.add(id(upload))
            ref = InputRef(path=("keyframes", i, "uri"), param=param, upload=upload)
        intake.inputs.append(ref)
        row.append(item)
    intake.row["keyframes"] = row


def validate_row(intake: Intake, job_id: str) -> ManifestRow:
    """ManifestRow validation; the first problem becomes a 400 naming the request parameter."""
    row = {"job_id": job_id, **intake.row}
    try:
        return ManifestRow.model_validate(row)
    except ValidationError as exc:
        problem = problems_from_validation_error(row, exc)[0]
        param = intake.param(problem.field)
        if param == "size":  # one request value behind two fields: name the field inside it
            text = f"size = '{row['width']}x{row['height']}': {problem.field} {problem.message}"
        else:
            text = f"{param}{'' if problem.field == 'row' else f' = {problem.value}'}: {problem.message}"
        raise APIError(400, text, param=param, code="invalid_value") from None


def set_input_uri(row: dict, path: tuple, uri: str) -> None:
    """Put a stored input's URI where its placeholder was."""
    target = row
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = uri


def check_server_paths(row: ManifestRow, prefixes: list[str], intake: Intake) -> None:
    """Weights a request names by path (LoRAs) must lie under a prefix the operator allowed."""
    named = [(f"{intake.param('loras')}[{i}].uri", lora.uri) for i, lora in enumerate(getattr(row, "loras", None) or [])]
    if getattr(row, "ic_lora", None):
        named.append(("ic_lora", row.ic_lora))
    roots = [p.rstrip("/") + "/" for p in prefixes]
    for param, uri in named:
        inside = any(uri.startswith(root) for root in roots) and ".." not in uri.replace("\\", "/").split("/")
        if not inside:
            allowed = ", ".join(roots) if roots else "none on this server"
            raise APIError(400, f"{param} = {uri!r}: LoRA weights must lie under an allowed prefix ({allowed})",
                           param=param, code="forbidden_path")
