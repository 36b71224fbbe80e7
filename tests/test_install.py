"""One locked dependency set for the README, CI and the GPU image; read from the files as they are."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
DOCKERFILE = REPO / "cluster" / "Dockerfile"


def lock_pins() -> dict[str, list[Requirement]]:
    pins: dict[str, list[Requirement]] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins.setdefault(canonicalize_name(req.name), []).append(req)
    return pins


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_the_lock_is_exact_pins_without_hashes_and_says_how_to_regenerate_it():
    header = LOCK.read_text().splitlines()[:2]
    assert "uv pip compile pyproject.toml --extra dev --universal" in header[1] and "-o requirements.lock" in header[1]
    for name, reqs in lock_pins().items():
        for req in reqs:
            (spec,) = req.specifier
            assert spec.operator == "==" and "*" not in spec.version, f"{name} is not pinned exactly: {req}"
    assert "--hash" not in LOCK.read_text()  # pip refuses hashes beside an editable install


def test_every_declared_dependency_is_locked_inside_its_range():
    pins = lock_pins()
    for req in pyproject_requirements():
        locked = pins.get(canonicalize_name(req.name))
        assert locked, f"{req.name} is in pyproject.toml but not in requirements.lock: regenerate the lock"
        for pin in locked:
            (spec,) = pin.specifier
            assert req.specifier.contains(spec.version, prereleases=True), (
                f"the lock pins {pin} outside pyproject's {req}: regenerate the lock")
    # The extras of ray are resolved too: Serve and Data need these.
    assert {"fastapi", "uvicorn", "pandas"} <= set(pins)


def test_the_lock_resolves_one_version_for_python_3_11_and_3_12_but_for_the_known_markers():
    split = {name for name, reqs in lock_pins().items()
             if any(r.marker is not None and "python_full_version" in str(r.marker) for r in reqs) and len(reqs) > 1}
    assert split <= {"networkx"}, f"packages whose version differs between Python 3.11 and 3.12: {split}"
    for name in ("torch", "torchaudio", "diffusers", "ray", "av", "numpy", "pydantic", "transformers"):
        assert len(lock_pins()[name]) == 1, name


def test_torch_and_torchaudio_are_pinned_together_and_the_broken_torchaudio_is_excluded():
    pins = lock_pins()
    assert str(pins["torch"][0].specifier) == "==2.11.0" and str(pins["torchaudio"][0].specifier) == "==2.11.0"
    torchaudio = next(r for r in pyproject_requirements() if r.name == "torchaudio")
    assert not torchaudio.specifier.contains("2.11.1"), "torchaudio 2.11.1 does not load beside torch 2.11.0"
    assert torchaudio.specifier.contains("2.11.0")


def test_readme_installs_through_the_lock_and_ci_runs_exactly_its_commands():
    readme = (REPO / "README.md").read_text()
    install, tests = (block.strip() for block in bash_blocks(readme)[:2])
    assert 'pip install -c requirements.lock -e ".[dev]"' in install and "ltx-ray run manifests/demo.parquet" in install
    ci = (REPO / ".ci" / "run").read_text()
    install_step = install.split(" && .venv/bin/ltx-ray run")[0]
    for command in install_step.split(" && "):
        assert command.replace(".venv/bin/pip install", ".venv/bin/pip install --quiet --disable-pip-version-check") in ci
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == tests
    # The doctor runs after the install and before the tests.
    assert lines.index(".venv/bin/ltx-ray doctor") < lines.index(tests)
    assert any("-c requirements.lock" in line for line in lines[: lines.index(".venv/bin/ltx-ray doctor")])


def _dockerfile_runs() -> list[str]:
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_the_image_installs_only_from_the_lock():
    runs = _dockerfile_runs()
    installs = [cmd.strip() for run in runs for cmd in run.split("&&") if re.search(r"\bpip3? install\b", cmd)]
    assert installs, "the Dockerfile installs nothing with pip"
    for cmd in installs:
        assert re.search(r"(-c|-r|--constraint|--requirement)\s+requirements\.lock\b", cmd), f"not from the lock: {cmd}"
        assert "--no-deps" not in cmd, f"--no-deps over a partial set: {cmd}"
        assert not re.search(r"--(extra-)?index-url|--find-links|\s-f\s", cmd), f"another index: {cmd}"
        assert not re.search(r"[\w\]]==|[\w\]]>=|[\w\]]<", cmd), f"a version written by hand, not the lock's: {cmd}"
    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY .*requirements\.lock", text, re.M)
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert re.match(r"nvidia/cuda:13\.", base), f"the lock's torch is the CUDA 13.0 build; base is {base}"


def test_the_image_smoke_check_is_the_doctor():
    last = _dockerfile_runs()[-1]
    checks = [cmd.strip() for cmd in last.split("&&")]
    assert checks[0] == "ltx-ray doctor", f"the build's last check must be a plain `ltx-ray doctor`: {last}"
    assert "LTX_RAY_LOCK=/opt/ltx-ray/requirements.lock" in DOCKERFILE.read_text()


def test_validate_exits_cleanly_as_the_image_smoke_check_runs_it():
    """pyarrow 26 reading a Parquet file through an open Python file object aborted the
    interpreter at exit about half the time (exit 134); the image's build step would fail."""
    import subprocess
    import sys

    for _ in range(4):
        done = subprocess.run([sys.executable, "-m", "ltx_ray.cli", "validate", str(REPO / "manifests" / "demo.parquet")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (done.returncode, done.stderr[-500:])
        assert "6 valid rows, 0 invalid rows" in done.stdout
