"""The column tables, derived from the pydantic models: one declaration per column.

A manifest column is declared once, as a ``ManifestRow`` field (its type and description);
a result column once, as a ``ResultRow`` field. From those fields this module derives each
column's Parquet type as a plain description (``"int64"``, ``"list<struct<uri: string, ...>>"``,
``"string (JSON object)"``), which ``manifests/SCHEMA.md`` prints and ltx_ray.storage turns
into pyarrow types. Adding a field to a model adds its column everywhere.

A column stored as a JSON string says so: a nested pydantic model (``qc``), a dict, or a
field whose ``json_schema_extra`` has ``{"column": "json"}`` (``metadata``, a string that
must hold a JSON object). A field that takes two kinds of cell names its column type there
too (``seconds``: ``"double or string"``, a number or ``auto``).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel

JSON = "string (JSON object)"
SCALARS = {str: "string", int: "int64", float: "double", bool: "bool"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the Parquet type, as SCHEMA.md writes it
    description: str


def columns(model: type[BaseModel]) -> list[Column]:
    """Every field of ``model`` as a column, in declaration order."""
    out = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        declared = extra.get("column")
        kind = JSON if declared == "json" else declared or column_type(field.annotation)
        out.append(Column(name=name, type=kind, description=field.description or ""))
    return out


def column_type(annotation: Any) -> str:
    """The Parquet type of one field annotation (``X | None`` is X: every column is nullable)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        inner = without_none(annotation)
        if inner is annotation:
            raise TypeError(f"a column must have one type, not {annotation!r}")
        return column_type(inner)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        values = typing.get_args(annotation)
        return column_type(type(values[0]))
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            fields = ", ".join(f"{c.name}: {c.type}" for c in columns(item))
            return f"list<struct<{fields}>>"
        return f"list<{column_type(item)}>"
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is str and value in (int, float):
            return f"map<string, {column_type(value)}>"
        return JSON
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return JSON
    if annotation in SCALARS:
        return SCALARS[annotation]
    # A type alias of a Literal (schema.fields.Task) resolves through its value.
    value = getattr(annotation, "__value__", None)
    if value is not None:
        return column_type(value)
    raise TypeError(f"no Parquet type for {annotation!r}; use str, int, float, bool, a Literal, a list or a model")


def without_none(annotation: Any) -> Any:
    """``X | None`` -> X; any other annotation as it is."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
