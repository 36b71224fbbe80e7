"""pyarrow types from the column descriptions of ltx_ray.schema.columns."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

from ltx_ray.schema.columns import JSON, columns

SCALARS = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(), JSON: pa.string()}
# Columns whose cells may be of either kind: the type is inferred from the values written.
EITHER = ("double or string",)


def arrow_type(kind: str) -> pa.DataType | None:
    """``"list<struct<uri: string, frame: int64>>"`` -> ``pa.list_(pa.struct([...]))``; None for an
    either-kind column (``EITHER``), whose type pyarrow infers from its values."""
    if kind in EITHER:
        return None
    if kind in SCALARS:
        return SCALARS[kind]
    if kind.startswith("list<struct<") and kind.endswith(">>"):
        fields = [part.split(": ", 1) for part in _split(kind[len("list<struct<"):-2])]
        return pa.list_(pa.struct([(name, arrow_type(sub)) for name, sub in fields]))
    if kind.startswith("list<") and kind.endswith(">"):
        return pa.list_(arrow_type(kind[5:-1]))
    if kind.startswith("map<") and kind.endswith(">"):
        key, value = _split(kind[4:-1])
        return pa.map_(arrow_type(key), arrow_type(value))
    raise ValueError(f"no pyarrow type for column type {kind!r}")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    return pa.schema([(c.name, arrow_type(c.type)) for c in columns(model)])


def _split(inner: str) -> list[str]:
    """Split on the top-level commas of a type list."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts
