"""``ltx-ray serve`` as a user starts it: a process on the session's Ray, answering the real client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.conftest import shutdown_serve

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ltx_ray_serve_answers_the_openai_client_and_stops_cleanly_on_ctrl_c(ray_local, tmp_path):
    port = free_port()
    address = ray_local.get_runtime_context().gcs_address
    keyfile = tmp_path / "keys"
    keyfile.write_text("cli-key\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "ltx_ray.cli", "serve", "--address", address, "--port", str(port),
         "--store", str(tmp_path / "store"), "--api-key-file", str(keyfile)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600  # a guard against a hung start, not a timing assertion
        while "serving http://127.0.0.1" not in log.read_text():  # printed once every replica is up
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "ltx-ray serve never said it was serving"
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()["status"] == "ok"
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="cli-key", max_retries=0)
        video = client.videos.create_and_poll(prompt="a cup", size="64x64", extra_body={"num_frames": 9},
                                              poll_interval_ms=100)
        assert video.status == "completed"
        assert (tmp_path / "store" / "videos" / f"{video.id}.mp4").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        shutdown_serve()  # the process's detached Serve actors must not keep the session's CPUs
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "stopping" in out
