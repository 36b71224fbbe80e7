"""What is wrong with a row, phrased for the person who wrote it: job, field, value and fix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


class RowProblem(BaseModel):
    """One thing wrong with one manifest row, phrased for the person who wrote it."""

    job_id: str
    field: str
    value: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}job {self.job_id!r}: {self.field} = {self.value}: {self.message}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems_from_validation_error(row: dict, exc: ValidationError, source: str = "") -> list[RowProblem]:
    """Turn pydantic's errors into RowProblems naming job, field, value and fix."""
    job_id = str(row.get("job_id")) if row.get("job_id") is not None else "<missing job_id>"
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) if loc else "row"
        value: Any = row
        for part in err["loc"]:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = err.get("input")
                break
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "missing":
            msg = "is required; add the column and a value for every row"
            value = None
        elif err["type"] == "extra_forbidden":
            msg = "is not a manifest column; remove it, or prefix it with x_ to keep it as pass-through"
        elif err["type"] == "string_pattern_mismatch" and loc == ["job_id"]:
            msg = (
                "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(it names the output files)"
            )
        if not loc and ": " in msg:
            # row-level checks name their field first: "FIELD: message"
            field, msg = msg.split(": ", 1)
            value = row.get(field)
        out.append(RowProblem(job_id=job_id, field=field, value=_short(value), message=msg, source=source))
    return out
