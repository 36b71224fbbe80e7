"""Shared fixtures (one tiny model and one local Ray per test session: starting Ray costs
seconds) and the test tiers.

Every test is in exactly one tier, so each can run alone:
- ``unit``: no Ray, no model; the fast loop (``pytest -m unit``).
- ``e2e``: real Ray and/or the tiny model, or an ``ltx-ray`` process doing so. A test is e2e
  when it asks for one of ``E2E_FIXTURES`` or is marked ``@pytest.mark.e2e`` (a module that
  starts its own Ray or subprocess runs says so with ``pytestmark``).
- ``gpu``: needs CUDA; skipped without it.
A test that starts Ray or an ``ltx-ray run`` without those fixtures must carry the mark;
the unit tier's measured time (README, Development) shows when one slipped through.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Two pytest workers share the cores (`-n 2` in pyproject): one torch thread per process,
# inherited by Ray's workers and `ltx-ray` subprocesses, so their OpenMP threads do not spin
# against each other (measured: four e2e modules 138 s -> 112 s on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")


E2E_FIXTURES = {"ray_local", "tiny_model", "engine"}
# The slowest modules, longest first (measured serial seconds on 2 cores, 2026-12-03: 215,
# 192, 181, 168, 99, 86; 2026-12-06 in the suite: ~45 the compile test's, ~35, ~35; test_rank_group
# ~80 serial, test_serve_chaos ~105 with its own Ray); a stale entry only costs some balance, never a test.
LONGEST_MODULES = ["test_serve_chaos", "test_submit_multinode", "test_bench", "test_faults", "test_run_e2e",
                   "test_rank_group", "test_serve", "test_nightly", "test_levers", "test_gpu", "test_pool"]
# Ray Serve's own actors (all named, in the "serve" namespace).
SERVE_ACTOR_CLASSES = ("ServeController", "ProxyActor", "ServeReplica")


@pytest.hookimpl(tryfirst=True)  # before -m selects by these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords:
            continue
        if "e2e" in item.keywords or E2E_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
        else:
            item.add_marker(pytest.mark.unit)
    _longest_first(items)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items:
        import torch

        if not torch.cuda.is_available():
            for item in gpu_items:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def _longest_first(items) -> None:
    """Modules in the order the workers should start them (``--dist loadfile`` hands out whole
    files in collection order): the longest first, then the other e2e modules, unit modules last,
    so no worker is left alone on a long module at the end while the other core idles (the
    batch runs order their jobs the same way)."""
    modules = {item.module.__name__.rsplit(".", 1)[-1] for item in items}
    e2e = {item.module.__name__.rsplit(".", 1)[-1] for item in items if "e2e" in item.keywords}

    def rank(name: str) -> int:
        if name in LONGEST_MODULES:
            return LONGEST_MODULES.index(name)
        return len(LONGEST_MODULES) + (name not in e2e)

    order = {name: rank(name) for name in modules}
    items.sort(key=lambda item: order[item.module.__name__.rsplit(".", 1)[-1]])  # stable: in-module order kept


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """A private cache so tests build (and prove they can build) the tiny model themselves."""
    cache = os.environ.get("LTX_RAY_TEST_CACHE") or str(tmp_path_factory.mktemp("ltx-ray-cache"))
    os.environ["LTX_RAY_CACHE"] = cache
    yield Path(cache)


@pytest.fixture(scope="session")
def tiny_model(model_cache):
    from ltx_ray.engine.weights import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API on loopback: moto's server (.ci/run starts one; else the tests do).

    The endpoint reaches s3fs through AWS_ENDPOINT_URL_S3, as it would for MinIO or any
    S3-compatible store, and Ray workers inherit it, so this must be set before Ray starts.
    """
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = os.environ.get("LTX_RAY_TEST_S3_ENDPOINT")
    server = None
    if not endpoint:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    yield endpoint
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def ray_local(model_cache, s3_endpoint):
    """A real local Ray shared by the session; ltx_ray.run reuses it instead of starting its own."""
    import ray

    # Workers inherit the environment: let them import tests.faults (fault-injection engines).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # Two fake GPUs: GPU scheduling is exercised while the replicas run on the CPU.
    # address="local": never attach to another cluster a `ray start` left on this machine.
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def engine(tiny_model):
    from ltx_ray.engine.ltx2 import LTX2Engine

    return LTX2Engine(tiny_model.path, device="cpu", dtype="float32", profile=tiny_model.profile)


def shutdown_serve(timeout_s: float = 60) -> None:
    """Stop Serve and wait until its actors have given the shared cluster its CPUs back.

    ``serve.shutdown()`` returns before the controller, proxy and replicas are gone; a test
    that then asks for the CPUs (a run's generation actor) would wait for them. Actors left
    after ``timeout_s`` are killed.
    """
    import time

    import ray
    from ray import serve

    serve.shutdown()
    deadline = time.monotonic() + timeout_s
    while True:
        # Read from the GCS directly: the state API needs a dashboard the shared cluster lacks.
        alive = [a for a in ray._private.state.actors().values()
                 if a["State"] == "ALIVE" and a["ActorClassName"].startswith(SERVE_ACTOR_CLASSES)]
        if not alive:
            return
        if time.monotonic() > deadline:
            for actor in alive:
                ray.kill(ray.get_actor(actor["Name"], namespace="serve"), no_restart=True)
            return
        time.sleep(0.5)


def draw_image(path: Path, size=(320, 240), color=(200, 30, 40)) -> Path:
    """A small product-like picture: a coloured disc on a light background."""
    img = Image.new("RGB", size, (235, 235, 230))
    from PIL import ImageDraw

    ImageDraw.Draw(img).ellipse([size[0] * 0.3, size[1] * 0.3, size[0] * 0.7, size[1] * 0.8], fill=color)
    img.save(path)
    return path


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    return {
        "red": draw_image(tmp_path / "red.png"),
        "green": draw_image(tmp_path / "green.png", color=(30, 160, 60)),
        "blue": draw_image(tmp_path / "blue.png", color=(40, 60, 200)),
    }


def frames_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)
