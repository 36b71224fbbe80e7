"""The /v1/videos endpoint on Ray Serve, driven by the real ``openai`` client over loopback.

One app on the session's local Ray (tiny model, CPU) serves every test in file order. Media stay tiny (256x160, 17 frames, 4 steps) so the module runs in
about two minutes on an idle 2-core machine.
"""

from __future__ import annotations

import io
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from openai.types import Video
from PIL import Image

from ltx_ray.serve.config import ServeArgs
from ltx_ray.storage.mux import probe
from tests.conftest import shutdown_serve

pytestmark = pytest.mark.e2e

APP = "ltx-ray-test"
KEY = "test-key-7f3a"
CONVENTION_KEYS = {"id", "object", "status", "progress", "created_at", "completed_at", "expires_at", "model",
                   "prompt", "seconds", "size", "remixed_from_video_id", "error"}
SMALL = {"size": "256x160"}
GUARD_S = 600  # a guard against a hung test, not a performance assertion


@dataclass
class Endpoint:
    port: int
    store: Path
    args: ServeArgs

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, key: str = KEY) -> OpenAI:
        return OpenAI(base_url=self.base, api_key=key, max_retries=0)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: ServeArgs) -> None:
    from ray import serve

    from ltx_ray.serve.app import build_app

    serve.run(build_app(args), name=APP, route_prefix="/")


@pytest.fixture(scope="module")
def endpoint(ray_local, tmp_path_factory):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    store = tmp_path_factory.mktemp("serve-store")
    args = ServeArgs(
        store=str(store), api_keys=[KEY], api_keys_env=None, allow_remote_urls=True, max_pending_jobs=10,
        poll_after_ms=50, max_prompt_chars=2000, max_upload_bytes=2 * 2**20, max_frame_pixels=256 * 160 * 33,
        torch_threads=1, watch_interval_s=1, lease_s=4, stale_after_s=20,
    )
    start_app(args)
    yield Endpoint(port, store, args)
    # Serve's actors would otherwise hold the shared cluster's CPUs for the rest of the session.
    shutdown_serve()


def png_bytes(color=(200, 30, 40), size=(320, 240)) -> bytes:
    img = Image.new("RGB", size, (235, 235, 230))
    from PIL import ImageDraw

    ImageDraw.Draw(img).ellipse([size[0] * 0.3, size[1] * 0.3, size[0] * 0.7, size[1] * 0.8], fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wait_until(client: OpenAI, video_id: str, statuses=("completed", "failed")) -> Video:
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        video = client.videos.retrieve(video_id)
        if video.status in statuses:
            return video
        time.sleep(0.05)
    raise AssertionError(f"{video_id} never reached {statuses}")


# -- the convention, through the real client ---------------------------------------------


def test_a_text_to_video_job_completes_and_downloads_as_h264_and_aac_of_the_asked_size_and_length(endpoint):
    client = endpoint.client()
    video = client.videos.create_and_poll(
        prompt="a red sneaker turning on a white table", model="ltx-2", seconds="1", size="256x160",
        extra_body={"fps": 16, "seed": 7, "negative_prompt": "blurry"}, poll_interval_ms=50,
    )
    assert (video.status, video.progress, video.error) == ("completed", 100, None)
    assert (video.model, video.seconds, video.size) == ("ltx-2", "1", "256x160")
    assert video.model_extra["num_frames"] == 17 and video.model_extra["seed"] == 7
    mp4 = probe(client.videos.download_content(video.id).read())
    assert (mp4.video_codec, mp4.audio_codec, mp4.width, mp4.height) == ("h264", "aac", 256, 160)
    assert mp4.num_frames == 17 and mp4.fps == 16
    assert abs(mp4.audio_duration_s - 17 / 16) < 0.05
    with endpoint.http() as http:
        raw = http.get(f"/videos/{video.id}").json()
    assert CONVENTION_KEYS <= set(raw) and raw["object"] == "video" and raw["expires_at"] is None


def test_progress_moves_with_the_denoising_steps_and_reads_say_when_to_poll_again(endpoint):
    client = endpoint.client()
    video = client.videos.create(prompt="a slow pan over a desk", size="256x160",
                                 extra_body={"num_frames": 33, "num_inference_steps": 8})
    assert video.status == "queued" and video.progress == 0
    seen = []
    with endpoint.http() as http:
        while True:
            resp = http.get(f"/videos/{video.id}")
            assert resp.headers["openai-poll-after-ms"] == "50"
            body = resp.json()
            seen.append((body["status"], body["progress"]))
            if body["status"] in ("completed", "failed"):
                break
            time.sleep(0.02)
    assert seen[-1] == ("completed", 100)
    middle = {p for s, p in seen if s == "in_progress" and 0 < p < 100}
    assert len(middle) >= 2, seen  # several steps seen on the way, not a jump from 0 to 100
    assert [p for _, p in seen] == sorted(p for _, p in seen)


def test_an_input_reference_image_makes_an_image_to_video_job_with_thumbnail_and_spritesheet(endpoint):
    client = endpoint.client()
    video = client.videos.create_and_poll(
        prompt="the red disc rolls away", size="256x160", input_reference=("first.png", png_bytes(), "image/png"),
        extra_body={"num_frames": 17}, poll_interval_ms=50,
    )
    assert video.status == "completed" and video.model_extra["task"] == "i2v"
    stored = list((endpoint.store / "inputs" / video.id).iterdir())
    assert [p.name for p in stored] == ["image_uri.png"]
    thumb = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="thumbnail").read()))
    assert (thumb.format, thumb.size) == ("JPEG", (256, 160))
    sheet = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="spritesheet").read()))
    assert sheet.format == "JPEG" and sheet.size == (4 * 160, 4 * 100)  # 16 frames of 17, 4 x 4


def test_keyframes_go_as_repeated_file_parts_and_land_on_their_frames(endpoint):
    client = endpoint.client()
    created = client.post(
        "/videos",
        cast_to=Video,
        body={"prompt": "a red disc turns green", "size": "256x160", "num_frames": "17",
              "keyframes": json.dumps([{"frame_index": 0, "file": "red.png"}, {"frame_index": 16, "file": "green.png"}])},
        files=[("keyframes", ("red.png", png_bytes(), "image/png")),
               ("keyframes", ("green.png", png_bytes((30, 160, 60)), "image/png"))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    video = wait_until(client, created.id)
    assert video.status == "completed" and video.model_extra["task"] == "keyframes"
    sidecar = json.loads((endpoint.store / "videos" / f"{video.id}.json").read_text())
    landed = sidecar["keyframes_landed"]
    assert [(k["frame"], k["effective_frame"]) for k in landed] == [(0, 0), (16, 16)]
    assert all(k["uri"].startswith(str(endpoint.store / "inputs" / video.id)) for k in landed)


def test_a_retake_uploads_its_source_and_keeps_it_outside_the_span(endpoint, tmp_path):
    from ltx_ray.storage.mux import decode_frames, write_mp4

    frames = np.full((17, 160, 256, 3), 30, np.uint8)
    for i in range(17):
        frames[i, 40:120, 8 * i : 8 * i + 40] = (220, 180, 40)
    write_mp4(tmp_path / "clip.mp4", frames, 24.0, None, None)
    client = endpoint.client()
    created = client.post(
        "/videos", cast_to=Video, body={"prompt": "the bar turns red", "start_s": "0.4", "end_s": "0.6"},
        files=[("video", ("clip.mp4", (tmp_path / "clip.mp4").read_bytes(), "video/mp4"))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    assert (created.size, created.model_extra["num_frames"], created.model_extra["task"]) == ("256x160", 17, "retake")
    video = wait_until(client, created.id)
    assert video.status == "completed", video.error
    got = decode_frames(client.videos.download_content(video.id).read()).astype(int)
    source = decode_frames(tmp_path / "clip.mp4").astype(int)
    assert got.shape == source.shape and np.abs(got[:9] - source[:9]).mean() < 3  # kept before frame 9
    assert np.abs(got[9:17] - source[9:17]).mean() > 10  # 0.4-0.6 s: latent frame 2, frames 9-16


def test_a_json_body_is_accepted_as_well_as_multipart(endpoint):
    with endpoint.http() as http:
        resp = http.post("/videos", json={"prompt": "a lamp", "size": "64x64", "num_frames": 9, "seed": 3,
                                          "extra_params": {"guidance_scale": 2.5}})
    assert resp.status_code == 200, resp.text
    video = wait_until(endpoint.client(), resp.json()["id"])
    assert video.status == "completed" and video.model_extra["seed"] == 3
    sidecar = json.loads((endpoint.store / "videos" / f"{video.id}.json").read_text())
    assert sidecar["job"]["guidance_scale"] == 2.5


def test_a_variant_or_enhancement_the_model_lacks_fails_the_video_naming_the_field_and_the_fix(endpoint):
    client = endpoint.client()
    for extra, needle in [({"variant": "full"}, "variant = 'full': profile tiny is one dev checkpoint"),
                          ({"enhance_prompt": True}, "enhance_prompt = True: profile tiny has no prompt enhancer here")]:
        video = client.videos.create(prompt="a lamp", size="64x64", extra_body={"num_frames": 9, **extra})
        video = wait_until(client, video.id)
        assert video.status == "failed" and video.error.code == "invalid_job", video
        assert needle in video.error.message and ("--enhancer" in video.error.message or "leave variant empty" in
                                                  video.error.message)


def test_the_list_pages_with_after_and_limit_in_both_orders(endpoint):
    client = endpoint.client()
    everything = [v.id for v in client.videos.list(limit=100, order="asc").data]
    assert len(everything) >= 4
    first = client.videos.list(limit=2, order="asc")
    assert first.has_more and [v.id for v in first.data] == everything[:2] and first.last_id == everything[1]
    assert [v.id for v in client.videos.list(limit=2, order="asc")] == everything  # the SDK follows after=last_id
    newest = client.videos.list(limit=3)
    assert [v.id for v in newest.data] == everything[::-1][:3]


def test_deleting_a_video_removes_it_and_its_files(endpoint):
    client = endpoint.client()
    video_id = next(v.id for v in client.videos.list(limit=100).data if v.status == "completed")
    assert (endpoint.store / "videos" / f"{video_id}.mp4").exists()
    deleted = client.videos.delete(video_id)
    assert (deleted.id, deleted.deleted) == (video_id, True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video_id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video_id)
    assert not (endpoint.store / "videos" / f"{video_id}.mp4").exists()
    assert video_id not in [v.id for v in client.videos.list(limit=100)]


def test_unknown_ids_are_not_found(endpoint):
    for video_id in ("video_" + "0" * 32, "nope"):
        with pytest.raises(openai.NotFoundError) as info:
            endpoint.client().videos.retrieve(video_id)
        assert info.value.body["type"] == "not_found_error"


@pytest.mark.parametrize("path", ["/videos/..%2F..%2Fjobs", "/videos/%2e%2e%2fetc%2fpasswd", "/videos/video_..%2Fx/content",
                                  "/videos/" + "%2F" * 3 + "etc"])
def test_ids_crafted_to_reach_outside_the_store_are_not_found(endpoint, path):
    # The SDK refuses such paths itself; a hand-written client would not.
    with endpoint.http() as http:
        resp = http.get(path)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"size": "250x160"}, "size"),
        ({"size": "wide"}, "size"),
        ({"size": "256x160", "extra_body": {"num_frames": 20}}, "num_frames"),
        ({"size": "256x160", "extra_body": {"num_inference_steps": 0}}, "num_inference_steps"),
        ({"size": "256x160", "extra_body": {"colour": "red"}}, "colour"),
    ],
)
def test_bad_sizes_and_frame_counts_are_bad_requests_naming_the_param(endpoint, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        endpoint.client().videos.create(prompt="p", **kwargs)
    assert info.value.body["param"] == param and info.value.body["message"]


def test_ten_requests_queue_on_one_replica_and_all_complete_and_an_eleventh_is_told_to_wait(endpoint):
    client = endpoint.client()
    small = {"num_frames": 9, "num_inference_steps": 1, "audio": False}
    # The first job holds the replica for a while, so the other nine queue behind it.
    ids = [client.videos.create(prompt="clip 0", size="256x160", extra_body={"num_frames": 17, "num_inference_steps": 20}).id]
    ids += [client.videos.create(prompt=f"clip {i}", size="64x64", extra_body=small).id for i in range(1, 10)]
    with pytest.raises(openai.RateLimitError) as info:
        client.videos.create(prompt="one too many", size="64x64", extra_body=small)
    assert info.value.body["code"] == "queue_full"
    finals = [wait_until(client, i) for i in ids]
    assert [v.status for v in finals] == ["completed"] * 10
    assert {v.model_extra["attempt"] for v in finals} == {1}
    # The ingress exports its queue depth on Ray's metrics endpoint: empty again now
    # (tests/test_serve_rules.py follows its value through a full queue).
    from tests.scrape import wait_for_value

    assert wait_for_value("ray_ltx_ray_serve_queue_depth", 0) == [0]


def test_deleting_a_queued_or_running_job_cancels_it_and_the_replica_moves_on(endpoint):
    client = endpoint.client()
    running = client.videos.create(prompt="long", size="256x160", extra_body={"num_frames": 33, "num_inference_steps": 40})
    queued = client.videos.create(prompt="waiting", size="256x160", extra_body={"num_frames": 17})
    wait_until(client, running.id, ("in_progress",))
    client.videos.delete(queued.id)
    client.videos.delete(running.id)
    after = client.videos.create_and_poll(prompt="next", size="64x64", extra_body={"num_frames": 9}, poll_interval_ms=50)
    assert after.status == "completed"
    for gone in (running.id, queued.id):
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(gone)
        assert not (endpoint.store / "videos" / f"{gone}.mp4").exists()
        assert not (endpoint.store / "jobs" / f"{gone}.json").exists()


# -- security ----------------------------------------------------------------------------


def test_requests_without_the_right_key_are_401(endpoint):
    for key in ("wrong-key", KEY + "x"):
        with pytest.raises(openai.AuthenticationError):
            endpoint.client(key).videos.list()
    resp = httpx.get(f"{endpoint.base}/videos")
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"


def test_a_prompt_over_the_limit_is_refused(endpoint):
    with pytest.raises(openai.BadRequestError) as info:
        endpoint.client().videos.create(prompt="x" * 2001, size="256x160")
    assert (info.value.body["param"], info.value.body["code"]) == ("prompt", "prompt_too_long")


def test_an_upload_over_the_limit_is_refused_before_it_is_parsed(endpoint):
    with pytest.raises(openai.APIStatusError) as info:
        endpoint.client().videos.create(prompt="p", size="256x160",
                                        input_reference=("big.png", b"\0" * (3 * 2**20), "image/png"))
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"


def test_every_client_reads_the_413_of_a_60_mb_upload_with_its_error_envelope(endpoint, tmp_path):
    """The server answers before the body is in: urllib (which sends all of it before reading)
    and curl (Expect: 100-continue, so it sends none) read the 413 as httpx does."""
    import subprocess
    import urllib.error
    import urllib.request

    body, boundary = b"\0" * (60 * 2**20), "ltxraybound"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n--{boundary}\r\n"
                 f"Content-Disposition: form-data; name=\"input_reference\"; filename=\"big.png\"\r\n"
                 f"Content-Type: image/png\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(f"{endpoint.base}/videos", data=multipart, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 413 and json.loads(info.value.read())["error"]["code"] == "request_too_large"
    with endpoint.http() as http:
        resp = http.post("/videos", content=multipart, headers={"Content-Type": headers["Content-Type"]})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    (tmp_path / "big.png").write_bytes(body)
    curl = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {KEY}", "-F", "prompt=p", "-F", f"input_reference=@{tmp_path / 'big.png'}",
         "-w", "\n%{http_code}", f"{endpoint.base}/videos"], capture_output=True, text=True, timeout=60)
    reply, status = curl.stdout.rsplit("\n", 1)
    assert status == "413" and json.loads(reply)["error"]["code"] == "request_too_large", curl.stderr


def test_too_many_frames_times_pixels_is_refused(endpoint):
    with pytest.raises(openai.BadRequestError) as info:
        endpoint.client().videos.create(prompt="p", size="256x160", extra_body={"num_frames": 41})
    assert info.value.body["code"] == "request_too_large"


def test_a_file_that_is_not_an_image_is_refused(endpoint):
    with pytest.raises(openai.BadRequestError) as info:
        endpoint.client().videos.create(prompt="p", size="256x160", input_reference=("a.png", b"not a png", "image/png"),
                                        extra_body={"num_frames": 17})
    assert (info.value.body["param"], info.value.body["code"]) == ("input_reference", "invalid_image")


@pytest.mark.parametrize(
    "field, url, code",
    [
        ("image_url", "file:///etc/passwd", "unsupported_url"),
        ("image_uri", "/etc/passwd", "unsupported_url"),
        ("image_url", "http://127.0.0.1:{port}/v1/videos", "forbidden_url"),
        ("image_url", "http://localhost:{port}/", "forbidden_url"),
        ("image_url", "http://169.254.169.254/latest/meta-data/", "forbidden_url"),
        ("image_url", "http://[::1]:{port}/", "forbidden_url"),
        ("image_url", "http://10.0.0.7/a.png", "forbidden_url"),
        ("keyframes", [{"frame_index": 0, "image_url": "http://192.168.0.1/a.png"}], "forbidden_url"),
    ],
)
def test_urls_to_local_files_or_non_public_addresses_are_never_fetched(endpoint, field, url, code):
    value = json.dumps(url) if isinstance(url, list) else url.format(port=endpoint.port)
    with pytest.raises(openai.BadRequestError) as info:
        endpoint.client().videos.create(prompt="p", size="256x160", extra_body={field: value, "num_frames": 17})
    assert info.value.body["code"] == code
    assert info.value.body["param"].startswith(field if field != "keyframes" else "keyframes[0]")


# Durability (a generator replica killed mid-job, an ingress replica killed, the whole app
# killed and started again on the same store) is tested with SIGKILLs in test_serve_chaos.py;
# the queue's rules with fake generators in test_serve_queue.py.
