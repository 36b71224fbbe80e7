"""``run_doctor``: every check that applies, in order."""

from __future__ import annotations

from collections.abc import Callable

from ltx_ray.doctor.install import (
    check_cuda,
    check_diffusers_ltx2,
    check_packages,
    check_pyav,
    check_python,
    check_torch,
    check_torchaudio,
    check_torchvision,
    check_worker_modules,
)
from ltx_ray.doctor.report import Check, DoctorReport, guarded
from ltx_ray.doctor.services import check_model, check_ray, check_store


def run_doctor(*, lock: str | None = None, address: str | None = None, out: str | None = None,
               model: str | None = None) -> DoctorReport:
    """Every check that applies, in order; ``ok`` when all of them passed."""
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("packages", lambda: check_packages(lock)),
        ("torch", check_torch),
        ("torchaudio", check_torchaudio),
        ("torchvision", check_torchvision),
        ("diffusers LTX2", check_diffusers_ltx2),
        ("worker modules", check_worker_modules),
        ("pyav encoders", check_pyav),
        ("cuda", check_cuda),
    ]
    if address is not None:
        steps.append((f"ray {address}", lambda: check_ray(address)))
    if out is not None:
        steps.append((f"out {out}", lambda: check_store(out)))
    if model is not None:
        steps.append((f"model {model}", lambda: check_model(model)))
    checks = [guarded(name, step) for name, step in steps]
    return DoctorReport(ok=all(c.ok for c in checks), checks=checks)


