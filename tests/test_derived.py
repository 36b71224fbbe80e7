"""Each column and flag is declared once, on its pydantic model; the Parquet types,
manifests/SCHEMA.md, the results schema and the CLI flags are read from there."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pytest
from pydantic import BaseModel, Field

from ltx_ray.batch.run import RunConfig
from ltx_ray.cli import build_parser
from ltx_ray.commands.flags import add_model_flags
from ltx_ray.commands.run import RUN_FLAGS
from ltx_ray.commands.serve import SPELLED, serve_args_from_cli, serve_flags
from ltx_ray.schema.columns import columns
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.results import ERROR_STAGES, ResultRow
from ltx_ray.serve.config import ServeArgs
from ltx_ray.storage.arrow import arrow_schema
from ltx_ray.storage.manifest import MANIFEST_ARROW_TYPES
from ltx_ray.storage.results import ARROW_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def schema_doc_types(text: str | None = None) -> dict[str, str]:
    """The column table of SCHEMA.md (the first table; the nested-item tables come later)."""
    text = text if text is not None else (REPO / "manifests" / "SCHEMA.md").read_text()
    table = text.split("| column | Parquet type | description |", 1)[1].split("\n\n", 1)[0]
    return {name: kind.strip() for name, kind in re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.M)}


def test_every_manifest_field_has_a_parquet_type_and_a_schema_doc_row_and_nothing_else_does():
    fields = list(ManifestRow.model_fields)
    assert list(MANIFEST_ARROW_TYPES) == fields
    doc = schema_doc_types()
    assert list(doc) == fields  # every field a row, every row a field, in order
    assert {c.name: c.type for c in columns(ManifestRow)} == doc
    assert doc["keyframes"] == "list<struct<uri: string, frame: int64, strength: double>>"
    assert doc["width"] == "int64" and doc["fps"] == "double" and doc["task"] == "string"


def test_nested_and_json_columns_get_the_types_parquet_writers_use():
    assert MANIFEST_ARROW_TYPES["keyframes"] == pa.list_(
        pa.struct([("uri", pa.string()), ("frame", pa.int64()), ("strength", pa.float64())])
    )
    assert MANIFEST_ARROW_TYPES["loras"] == pa.list_(pa.struct([("uri", pa.string()), ("scale", pa.float64())]))
    assert MANIFEST_ARROW_TYPES["qc"] == pa.string() and MANIFEST_ARROW_TYPES["metadata"] == pa.string()
    assert MANIFEST_ARROW_TYPES["seed"] == pa.int64() and MANIFEST_ARROW_TYPES["two_stage"] == pa.bool_()
    assert schema_doc_types()["qc"] == "string (JSON object)"


def test_the_results_schema_is_resultrow_in_order():
    assert ARROW_SCHEMA.names == list(ResultRow.model_fields)
    assert ARROW_SCHEMA.field("timings").type == pa.map_(pa.string(), pa.float64())
    assert ARROW_SCHEMA.field("bytes").type == pa.int64() and ARROW_SCHEMA.field("qc").type == pa.string()


def test_a_field_added_to_a_model_becomes_a_column_without_touching_another_table():
    class Wider(ResultRow):
        shots: list[int] | None = Field(default=None, description="cut points")

    schema = arrow_schema(Wider)
    assert schema.names[-1] == "shots" and schema.field("shots").type == pa.list_(pa.int64())
    assert columns(Wider)[-1].description == "cut points"


def test_a_manifest_field_added_to_the_model_reaches_schema_doc_and_parquet_types(monkeypatch):
    import ltx_ray.schema.doc as doc
    from ltx_ray.storage.arrow import arrow_type

    class Wider(ManifestRow):
        camera: Literal["static", "pan"] | None = Field(default=None, description="How the camera moves.")

    monkeypatch.setattr(doc, "ManifestRow", Wider)
    table = schema_doc_types(doc.render_schema_doc())
    assert list(table)[-1] == "camera" and table["camera"] == "string"
    assert "| `camera` | string | How the camera moves. |" in doc.render_schema_doc()
    assert arrow_type(columns(Wider)[-1].type) == pa.string()


def test_every_error_stage_the_code_writes_is_declared_and_an_unknown_one_is_refused():
    runner = (REPO / "ltx_ray" / "job" / "runner.py").read_text()
    written = set(re.findall(r'ledger\.timed\("(\w+)"\)', runner))
    # The stage a job is in before its first timed block (a failure there is named by it).
    written |= set(re.findall(r'stage: str = "(\w+)"', (REPO / "ltx_ray" / "job" / "record.py").read_text()))
    for path in [*(REPO / "ltx_ray").rglob("*.py"), *(REPO / "bench").rglob("*.py")]:
        written |= set(re.findall(r'error_stage="(\w+)"', path.read_text()))
    assert written >= {"validate", "recipe", "fetch_inputs", "generate", "mux", "qc", "upload", "write_metadata"}
    assert written <= set(ERROR_STAGES)
    for stage in ERROR_STAGES:
        assert ResultRow(job_id="a", status="failed", error_stage=stage).error_stage == stage
        assert f"`{stage}`" in ResultRow.model_fields["error_stage"].description
    with pytest.raises(ValueError, match="error_stage"):
        ResultRow(job_id="a", status="failed", error_stage="encode")


def _help(command: str) -> str:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return "".join(sub.format_help().split())  # argparse wraps lines, also at hyphens


@pytest.mark.parametrize("command, model, names", [("run", RunConfig, RUN_FLAGS), ("submit", RunConfig, RUN_FLAGS),
                                                   ("nightly", RunConfig, RUN_FLAGS), ("serve", ServeArgs, serve_flags())])
def test_each_flag_shows_its_fields_description(command, model, names):
    text = _help(command)
    for name in names:
        assert f"--{name.replace('_', '-')}" in text
        # --gpus-per-replica's help says how its unset default is decided; submit's --address
        # is the job server's, not the run's.
        if name != "gpus_per_replica" and not (command == "submit" and name == "address"):
            assert "".join(model.model_fields[name].description.split()) in text, name


def test_ltx_ray_serve_takes_every_serve_args_field_as_a_flag_and_builds_the_same_args():
    assert set(serve_flags()) | SPELLED == set(ServeArgs.model_fields)  # every field, none twice
    text = _help("serve")
    assert "--api-key" in text and "--api-key-file" in text
    parser, _ = build_parser()
    args = parser.parse_args([
        "serve", "--store", "/srv/store", "--lora-prefixes", "s3://b/loras/", "--lora-prefixes", "/opt/loras",
        "--max-upload-bytes", "4096", "--stale-after-s", "30", "--allow-remote-urls", "--api-key", "k1", "--dtype", "float32",
    ])
    got = serve_args_from_cli(args)
    assert got.lora_prefixes == ["s3://b/loras/", "/opt/loras"]  # a server started from the CLI takes LoRA requests
    assert (got.max_upload_bytes, got.stale_after_s, got.allow_remote_urls, got.dtype) == (4096, 30.0, True, "float32")
    assert [k.get_secret_value() for k in got.api_keys] == ["k1"]
    defaults = serve_args_from_cli(parser.parse_args(["serve", "--store", "/srv/store"]))
    assert defaults == ServeArgs(store="/srv/store")  # an untouched flag is the field's default


def test_flags_take_the_fields_defaults_choices_and_types():
    class Knobs(BaseModel):
        size: int = Field(default=3, description="how many")
        mode: str = Field(default="fast", description="which")
        kind: str | None = None
        loud: bool = Field(default=False, description="say more")
        needed: str = Field(description="must be given")

    class More(Knobs):
        level: Literal["a", "b"] = Field(default="a", description="the level")

    p = argparse.ArgumentParser()
    add_model_flags(p, More, ["size", "mode", "loud", "needed", "level"])
    args = p.parse_args(["--needed", "x", "--size", "5", "--loud"])
    assert (args.size, args.mode, args.loud, args.needed, args.level) == (5, "fast", True, "x", "a")
    with pytest.raises(SystemExit):
        p.parse_args(["--needed", "x", "--level", "c"])
    with pytest.raises(SystemExit):
        p.parse_args([])  # --needed is required, as the field has no default
