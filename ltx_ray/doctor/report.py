"""A doctor's findings: one Check per line, OK or FAIL with the fix.

Each check is a small function returning a :class:`Check`. A check never raises: whatever
goes wrong inside it is its finding (``guarded``)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    fix: str = ""


class DoctorReport(BaseModel):
    ok: bool
    checks: list[Check]


def format_table(report: DoctorReport) -> str:
    width = max(len(c.name) for c in report.checks)
    lines = []
    for c in report.checks:
        lines.append(f"{c.name:<{width}}  {'OK' if c.ok else 'FAIL':<4}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':<{width}}        fix: {c.fix}")
    failed = [c.name for c in report.checks if not c.ok]
    lines.append("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return "\n".join(lines)


def guarded(name: str, step: Callable[[], Check]) -> Check:
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check, not a crashed doctor
        return Check(name=name, ok=False, detail=one_line(exc),
                     fix="this is a bug in the check; please report it with `ltx-ray doctor --json`")


def one_line(exc: BaseException) -> str:
    """The error and its cause on one line: torch wraps the loader's own message
    ("undefined symbol: ...") in a generic "Could not load this library"."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = str(exc).strip().splitlines()
        parts.append(f"{type(exc).__name__}: {text[0] if text else ''}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return " <- ".join(parts)[:500]


