"""The package's layering, read from the source: which layer may import which, where torch
may be imported, and what validating a manifest loads. A new import that breaks a rule fails
here with the module and the import named."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ltx_ray"

# Each layer and the layers it may import (its own included). The order is the data flow:
# the contract, bytes in and out, the model, one job, then the ways in.
MAY_IMPORT = {
    "errors": set(),
    "schema": {"schema"},
    "storage": {"schema", "storage", "errors"},
    "engine": {"schema", "storage", "engine", "errors"},
    "job": {"schema", "storage", "engine", "job", "errors"},
    "products": {"schema", "storage", "products", "errors"},
    # a replica: one rank, or a Ray actor group of ranks (issue 18); batch and serve share it
    "replica": {"schema", "storage", "engine", "job", "replica", "errors"},
    "batch": {"schema", "storage", "engine", "job", "replica", "products", "batch", "errors"},
    "serve": {"schema", "storage", "job", "replica", "serve", "errors"},
    "doctor": {"schema", "storage", "engine", "job", "replica", "batch", "serve", "doctor", "errors"},
    "commands": {"schema", "storage", "engine", "job", "replica", "products", "batch", "serve", "doctor", "commands",
                 "errors", "cli"},
    "cli": {"errors", "commands"},
    "__init__": set(),
}
# torch and the libraries built on it load only in the engine (and in doctor, which checks
# that they load).
MODEL_LIBRARIES = {"torch", "torchaudio", "diffusers", "transformers", "peft", "accelerate", "torchao"}
MAY_IMPORT_MODEL_LIBRARIES = {"engine", "doctor"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def internal_edges() -> dict[str, set[str]]:
    mods = modules()
    edges = {}
    for name, path in mods.items():
        targets = set()
        for imported in imports(name, path):
            while imported and imported not in mods:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "ltx_ray":
                targets.add(imported)
        edges[name] = targets
    return edges


def test_every_module_belongs_to_a_known_layer():
    assert {layer(m) for m in modules()} <= set(MAY_IMPORT) | {"__init__"}


def test_no_layer_imports_one_above_it():
    wrong = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in internal_edges().items()
        for target in sorted(targets)
        if layer(target) not in MAY_IMPORT[layer(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_there_are_no_import_circles():
    edges = internal_edges()
    circles = []

    def visit(node, path):
        for nxt in edges[node]:
            if nxt in path:
                circles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    done: set[str] = set()
    for start in edges:
        if start not in done:
            visit(start, [start])
    assert not circles, "\n".join(sorted(set(circles)))


def test_only_the_engine_imports_torch_and_diffusers():
    wrong = [
        f"{name} imports {lib}"
        for name, path in modules().items()
        if layer(name) not in MAY_IMPORT_MODEL_LIBRARIES
        for lib in sorted({i.split(".")[0] for i in imports(name, path)} & MODEL_LIBRARIES)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_job_layer_knows_no_ray_and_no_http():
    wrong = [
        f"{name} imports {lib}"
        for name, path in modules().items()
        if layer(name) == "job"
        for lib in sorted({i.split(".")[0] for i in imports(name, path)} & {"ray", "fastapi", "starlette", "httpx"})
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules().values() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


HEAVY = ["torch", "diffusers", "ray", "av", "fsspec"]
PROBE = "import json, sys\n{body}\nprint(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))"


def _loaded_after(body: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_schema_loads_no_torch_ray_av_or_fsspec():
    body = "\n".join(f"import {m}" for m in modules() if layer(m) == "schema")
    assert _loaded_after(body) == []


@pytest.mark.parametrize("manifest", ["manifests/demo.parquet"])
def test_ltx_ray_validate_loads_no_torch_diffusers_ray_or_av(manifest):
    body = (
        "from ltx_ray.cli import main\n"
        "import contextlib, io\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    rc = main(['validate', {manifest!r}])\n"
        "assert rc == 0, rc"
    )
    loaded = _loaded_after(body)
    assert not set(loaded) & {"torch", "diffusers", "ray", "av"}, loaded
