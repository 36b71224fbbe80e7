"""The Serve endpoint's rules without a server: request mapping, auth, URL policy, ids, config.

Fast: no Ray, no model. The same rules are exercised end to end through the real client in
tests/test_serve.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.serve.config import ServeArgs
from ltx_ray.serve.intake import PLACEHOLDER, Upload, parse_create, validate_row
from ltx_ray.serve.jobs import StoreJobStore, check_video_id
from ltx_ray.serve.protocol import APIError, JobRecord
from ltx_ray.serve.security import ApiKeys, RemoteFetcher, public_address

REPO = Path(__file__).resolve().parents[1]
VID = "video_" + "ab" * 16


def png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 40)).save(buf, format="PNG")
    return buf.getvalue()


def intake_of(fields, files=None, max_prompt_chars=32000):
    return parse_create(fields, files or {}, max_prompt_chars=max_prompt_chars)


def error_of(fields, files=None, **kw) -> APIError:
    with pytest.raises(APIError) as info:
        validate_row(intake_of(fields, files, **kw), VID)
    return info.value


def test_text_form_values_are_parsed_leniently_into_a_manifest_row():
    row = validate_row(intake_of({
        "prompt": "a red sneaker", "size": "256x160", "seconds": "2", "fps": "24.0", "seed": "7",
        "num_inference_steps": "4", "guidance_scale": "3.5", "audio": "false", "negative_prompt": "blurry",
        "model": "ltx-2",
    }), VID)
    assert (row.width, row.height, row.seconds, row.fps, row.seed, row.steps) == (256, 160, 2.0, 24.0, 7, 4)
    assert row.guidance_scale == 3.5 and row.audio is False and row.negative_prompt == "blurry"
    assert row.resolve(row_defaults()).num_frames == 49  # 2 s x 24 fps -> nearest 8k + 1


def row_defaults():
    from ltx_ray.schema.profiles import ModelProfile

    return ModelProfile()


def test_num_frames_wins_over_seconds_as_the_convention_says():
    intake = intake_of({"prompt": "p", "seconds": "4", "num_frames": "17"})
    row = validate_row(intake, VID)
    assert row.num_frames == 17 and row.seconds is None and intake.seconds == "4"


def test_every_manifest_field_is_reachable_from_the_api():
    """Generic mapping: a field added to ManifestRow is accepted without touching the HTTP layer."""
    special = {"job_id", "width", "height", "image_uri", "keyframes", "steps"}
    for name, info in ManifestRow.model_fields.items():
        if name in special or name.endswith("_uri") or name == "loras":
            continue
        from ltx_ray.serve.intake import _structured

        value = "{}" if _structured(info.annotation) else "x"
        intake = intake_of({"prompt": "p", name: value} if name != "prompt" else {"prompt": "p"})
        assert name in intake.row, name


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"prompt": "p", "size": "250x160"}, "size"),
        ({"prompt": "p", "size": "big"}, "size"),
        ({"prompt": "p", "size": "256x160", "width": "256"}, "width"),
        ({"prompt": "p", "num_frames": "20"}, "num_frames"),
        ({"prompt": "p", "num_inference_steps": "0"}, "num_inference_steps"),
        ({"prompt": "p", "guidance_scale": "loud"}, "guidance_scale"),
        ({"prompt": "p", "seed": "-1"}, "seed"),
        ({"prompt": "p", "fps": "nan"}, "fps"),
        ({"prompt": "p", "colour": "red"}, "colour"),
        ({"prompt": "p", "job_id": "../../etc"}, "job_id"),
        ({"prompt": "p", "metadata": "[1]"}, "metadata"),
        ({"prompt": "  "}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "p", "extra_params": "{bad"}, "extra_params"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_request_parameter(fields, param):
    err = error_of(fields)
    assert err.status == 400 and err.body.param == param, err.body


def test_a_prompt_over_the_server_limit_is_refused_before_anything_else():
    err = error_of({"prompt": "x" * 101}, max_prompt_chars=100)
    assert (err.status, err.body.param, err.body.code) == (400, "prompt", "prompt_too_long")


def test_input_reference_and_keyframe_parts_become_inputs_with_placeholders():
    first = Upload("first.png", "image/png", png())
    k0, k1 = Upload("a.png", "image/png", png()), Upload("b.png", "image/png", png())
    intake = intake_of({"prompt": "p", "num_frames": "17",
                        "keyframes": json.dumps([{"frame_index": 0, "file": "b.png"}, {"frame_index": 16}])},
                       {"keyframes": [k0, k1]})
    assert [r.upload for r in intake.inputs] == [k1, k0]
    assert intake.row["keyframes"][1] == {"frame": 16, "uri": f"{PLACEHOLDER}/keyframes/1"}
    validate_row(intake, VID)
    i2v = intake_of({"prompt": "p"}, {"input_reference": [first]})
    assert i2v.row["image_uri"].startswith(PLACEHOLDER) and i2v.inputs[0].upload is first
    err = error_of({"prompt": "p", "num_frames": "17", "keyframes": json.dumps([{"frame_index": 17}])},
                   {"keyframes": [k0]})
    assert err.body.param == "keyframes" and "outside the video" in err.body.message


def test_a_file_part_with_an_unknown_name_is_refused():
    with pytest.raises(APIError) as info:
        intake_of({"prompt": "p"}, {"mask": [Upload("m.png", None, b"x")]})
    assert info.value.body.param == "mask"


# -- security ----------------------------------------------------------------------------


def test_api_keys_come_from_args_a_file_and_the_environment(tmp_path, monkeypatch):
    keyfile = tmp_path / "keys"
    keyfile.write_text("# team keys\nfile-key\n\n")
    monkeypatch.setenv("TEST_LTX_KEYS", "env-a, env-b")
    keys = ApiKeys.load(["arg-key"], str(keyfile), "TEST_LTX_KEYS")
    for key in ("arg-key", "file-key", "env-a", "env-b"):
        keys.check(f"Bearer {key}")
    for header in (None, "", "Bearer ", "Basic arg-key", "Bearer arg-ke", "Bearer arg-key2", "Bearer # team keys"):
        with pytest.raises(APIError) as info:
            keys.check(header)
        assert info.value.status == 401
    ApiKeys.load([], None, None).check(None)  # no keys: open


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1",
                                "fe80::1", "fc00::1", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1"])
def test_non_public_addresses_are_never_fetched(ip):
    assert not public_address(ip)
    fetcher = RemoteFetcher(allow=True, max_bytes=1024, resolver=lambda host, port: [ip])
    with pytest.raises(APIError) as info:
        asyncio.run(fetcher.fetch("https://images.example.com/a.png", "image_url"))
    assert (info.value.status, info.value.body.code) == (400, "forbidden_url")


def test_a_host_with_any_private_address_is_refused_and_public_ones_are_pinned():
    fetcher = RemoteFetcher(allow=True, max_bytes=1024, resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(APIError):
        fetcher.check("http://mixed.example.com/a.png", "image_url")
    public = RemoteFetcher(allow=True, max_bytes=1024, resolver=lambda host, port: ["93.184.216.34"])
    assert public.check("https://cdn.example.com/a.png?x=1", "p") == ("https://93.184.216.34:443/a.png?x=1", "cdn.example.com")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "s3://bucket/key", "gopher://x/", "ftp://x/a"])
def test_only_http_urls_are_accepted(url):
    with pytest.raises(APIError) as info:
        RemoteFetcher(allow=True, max_bytes=1024).check(url, "image_url")
    assert info.value.body.code == "unsupported_url"


def test_remote_urls_are_refused_when_the_server_does_not_allow_them():
    with pytest.raises(APIError) as info:
        RemoteFetcher(allow=False, max_bytes=1024).check("https://cdn.example.com/a.png", "image_url")
    assert info.value.body.code == "remote_urls_disabled"


@pytest.mark.parametrize("bad", ["../jobs/x", "video_../../etc", "video_" + "A" * 32, "video_" + "0" * 31,
                                 "video_" + "0" * 32 + "/x", "", "video_" + "0" * 32 + "\n"])
def test_only_server_minted_ids_reach_the_store(tmp_path, bad):
    assert not check_video_id(bad)
    store = StoreJobStore(str(tmp_path))
    assert store.get(bad) is None
    with pytest.raises(ValueError):
        store.save_input(bad, "x.png", b"x")


def test_a_record_is_written_only_by_the_attempt_that_holds_it(tmp_path):
    from ltx_ray.serve.jobs import JobAbandoned

    store = StoreJobStore(str(tmp_path))
    store.create(JobRecord(id=VID, prompt="p", size="256x160", row={"prompt": "p"}, task="t2v", num_frames=9,
                           fps=24.0, seed=1, attempt=2))
    with pytest.raises(JobAbandoned):
        store.update(VID, 1, progress=50)
    assert store.update(VID, 2, progress=50).progress == 50
    store.mark_deleted(VID)
    with pytest.raises(JobAbandoned):
        store.update(VID, 2, progress=60)
    assert store.get(VID) is None and store.list() == []


def test_the_serve_config_in_the_repo_starts_the_typed_builder():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((REPO / "cluster" / "serve-config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "ltx_ray.serve.app:build_app"
    args = ServeArgs.model_validate(app["args"])
    assert args.api_keys == [] and args.api_keys_file
    # What `serve run` / `serve deploy` do with import_path and args: a typed builder call.
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from ltx_ray.serve.app import build_app

    assert isinstance(call_user_app_builder_with_args_if_necessary(build_app, app["args"]), Application)
    with pytest.raises(Exception, match="replicas"):
        call_user_app_builder_with_args_if_necessary(build_app, {**app["args"], "replicas": 0})


# -- orchestration of the service, with a fake generator ---------------------------------


def fake_args(tmp_path, **kw) -> ServeArgs:
    return ServeArgs(store=str(tmp_path), **kw)


def record(video_id: str, status: str, attempt: int = 1) -> JobRecord:
    return JobRecord(id=video_id, status=status, prompt="p", size="64x64", row={"prompt": "p"}, task="t2v",
                     num_frames=9, fps=24.0, seed=1, attempt=attempt)


def plant(store, video_id: str, status: str, *, lease_in_s: float | None, progress_age_s: float = 1, attempt: int = 1,
          owner: str = "generator-gone") -> None:
    """A record as a replica left it: its lease running out ``lease_in_s`` from now (None: none)."""
    now = time.time()
    old = record(video_id, status, attempt).model_copy(update={
        "lease_owner": owner if lease_in_s is not None else None,
        "lease_expires_at": now + lease_in_s if lease_in_s is not None else None,
        "progress_at": now - progress_age_s, "updated_at": now - progress_age_s})
    store.root.put(f"jobs/{video_id}.json", old.model_dump_json().encode())


def test_a_restarted_service_takes_back_what_a_dead_app_held_and_fences_its_worker(tmp_path):
    from ltx_ray.serve.jobs import JobAbandoned
    from ltx_ray.serve.service import VideoService

    store = StoreJobStore(str(tmp_path))
    ids = {s: f"video_{i:032x}" for i, s in enumerate(["completed", "failed", "queued", "in_progress", "running"])}
    for status in ("completed", "failed"):
        plant(store, ids[status], status, lease_in_s=None)
    plant(store, ids["queued"], "queued", lease_in_s=-1, owner="ingress-of-the-old-app")
    plant(store, ids["in_progress"], "in_progress", lease_in_s=-1)
    # A generator of this app still beating its heartbeat: left alone.
    plant(store, ids["running"], "in_progress", lease_in_s=60, owner="generator-alive")
    dispatched = []

    async def fake_submit(video_id: str, attempt: int) -> str:
        dispatched.append((video_id, attempt))
        store.update(video_id, attempt, status="completed", progress=100)
        return "completed"

    async def restart():
        service = VideoService(fake_args(tmp_path), store, fake_submit, fetcher=None)
        await service.start()
        while service.dispatcher.inflight:
            await asyncio.sleep(0.01)

    asyncio.run(restart())
    # The queued job is dispatched again as the same attempt (it never ran); the running one
    # as the next attempt, which fences off the old app's worker.
    assert sorted(dispatched) == sorted([(ids["queued"], 1), (ids["in_progress"], 2)])
    with pytest.raises(JobAbandoned):
        store.update(ids["in_progress"], 1, progress=50)
    final = {r.id: (r.status, r.attempt) for r in store.list()}
    assert final[ids["in_progress"]] == ("completed", 2) and final[ids["running"]] == ("in_progress", 1)


def test_a_job_whose_worker_keeps_dying_is_requeued_then_failed_never_left_in_progress(tmp_path):
    from ltx_ray.serve.service import VideoService

    store = StoreJobStore(str(tmp_path))
    attempts = []

    async def fake_dying_submit(video_id: str, attempt: int) -> str:
        attempts.append(attempt)
        store.update(video_id, attempt, status="in_progress", progress=40)
        raise RuntimeError("ActorDiedError: the actor died unexpectedly")

    async def scenario():
        service = VideoService(fake_args(tmp_path, max_attempts=3), store, fake_dying_submit, fetcher=None)
        video = await service.create({"prompt": "p", "size": "64x64", "num_frames": "9"}, {})
        while service.dispatcher.inflight:
            await asyncio.sleep(0.01)
        return await service.get(video.id)

    video = asyncio.run(scenario())
    assert attempts == [1, 2, 3]
    assert (video.status, video.error.code, video.attempt) == ("failed", "worker_died", 3)
    assert "attempt 3 of 3" in video.error.message


def test_the_queue_refuses_work_beyond_max_pending_jobs(tmp_path):
    from ltx_ray.serve.service import VideoService

    store = StoreJobStore(str(tmp_path))

    async def scenario():
        release = asyncio.Event()

        async def fake_blocked_submit(video_id: str, attempt: int) -> str:
            await release.wait()
            store.update(video_id, attempt, status="completed", progress=100)
            return "completed"

        service = VideoService(fake_args(tmp_path, max_pending_jobs=2), store, fake_blocked_submit, fetcher=None,
                               metrics=metrics)
        for _ in range(2):
            await service.create({"prompt": "p", "size": "64x64", "num_frames": "9"}, {})
        with pytest.raises(APIError) as info:
            await service.create({"prompt": "p", "size": "64x64", "num_frames": "9"}, {})
        depth_when_full = metrics.depths[-1]
        release.set()
        while service.dispatcher.inflight:
            await asyncio.sleep(0.01)
        depth_when_drained = metrics.depths[-1]
        await service.create({"prompt": "p", "size": "64x64", "num_frames": "9"}, {})  # room again
        return info.value, depth_when_full, depth_when_drained

    metrics = FakeMetrics()
    err, full, drained = asyncio.run(scenario())
    assert (err.status, err.body.code) == (429, "queue_full")
    # The queue depth gauge follows the queue: full at the refusal, empty once the jobs are done.
    assert (full, drained, max(metrics.depths)) == (2, 0, 2)


class FakeMetrics:
    """Records what VideoService reports (the app's ServeMetrics exports it through Ray)."""

    def __init__(self):
        self.depths: list[int] = []
        self.lease_expiries = 0

    def queue_depth(self, jobs: int) -> None:
        self.depths.append(jobs)

    def lease_expired(self) -> None:
        self.lease_expiries += 1


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path, s3_endpoint):
    import uuid

    import fsspec

    if request.param == "local":
        return str(tmp_path / "store")
    bucket = f"ltx-ray-serve-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/serve"


def test_the_job_store_keeps_records_inputs_and_outputs_on_a_folder_or_s3(store_uri):
    store = StoreJobStore(store_uri)
    first, second = f"video_{1:032x}", f"video_{2:032x}"
    store.create(record(first, "queued"))
    store.create(record(second, "completed"))
    uri = store.save_input(first, "image_uri.png", png())
    assert uri.startswith(store_uri.rstrip("/")) and "inputs/" + first in uri
    store.outputs.put(f"{first}.mp4", b"mp4")
    reopened = StoreJobStore(store_uri)  # what a restarted app sees
    assert [r.id for r in reopened.list()] == [first, second]
    assert reopened.update(first, 1, status="in_progress", progress=30).progress == 30
    reopened.mark_deleted(first)
    reopened.purge(first)
    assert reopened.get(first) is None and not reopened.outputs.exists(f"{first}.mp4")
    assert reopened.root.list(f"inputs/{first}") == []
    assert [r.id for r in StoreJobStore(store_uri).list()] == [second]


def test_the_sweep_takes_back_jobs_whose_lease_ran_out_or_that_stopped_progressing_and_no_others(tmp_path):
    from ltx_ray.serve.service import VideoService

    store = StoreJobStore(str(tmp_path))
    ids = [f"video_{i:032x}" for i in range(5)]
    orphan, silent, waiting, elsewhere, busy = ids
    plant(store, orphan, "in_progress", lease_in_s=-1)  # its generator died
    plant(store, silent, "in_progress", lease_in_s=60, progress_age_s=100)  # beating, but stuck
    plant(store, waiting, "queued", lease_in_s=-1, owner="ingress-dead")  # its ingress replica died
    plant(store, elsewhere, "queued", lease_in_s=60, owner="ingress-alive")  # another replica dispatches it
    plant(store, busy, "in_progress", lease_in_s=60)  # running fine
    dispatched = []

    async def fake_submit(video_id: str, attempt: int) -> str:
        dispatched.append((video_id, attempt))
        store.update(video_id, attempt, status="completed", progress=100)
        return "completed"

    async def scenario():
        service = VideoService(fake_args(tmp_path, stale_after_s=50), store, fake_submit, fetcher=None, metrics=metrics)
        await service.dispatcher.sweep()
        while service.dispatcher.inflight:
            await asyncio.sleep(0.01)
        return service

    metrics = FakeMetrics()
    service = asyncio.run(scenario())
    assert sorted(dispatched) == sorted([(orphan, 2), (silent, 2), (waiting, 1)])
    assert {r.id: r.status for r in store.list()} == {
        orphan: "completed", silent: "completed", waiting: "completed", elsewhere: "queued", busy: "in_progress"}
    # Two running jobs taken back from their generator; a queued job's dispatch lease is no job lost.
    assert metrics.lease_expiries == 2
    # Jobs other replicas hold count toward this replica's 429 bound.
    assert service.dispatcher.elsewhere == 5


def test_lora_weights_named_in_a_request_must_lie_under_an_allowed_prefix():
    from ltx_ray.serve.intake import check_server_paths

    if "loras" not in ManifestRow.model_fields:
        pytest.skip("this manifest schema has no LoRAs")
    for uri, prefixes in [("/etc/passwd", []), ("/srv/loras/../../etc/x.safetensors", ["/srv/loras"]),
                          ("s3://internal/secret.safetensors", ["s3://team/loras"]), ("/srv/lorasX/a.safetensors", ["/srv/loras"])]:
        intake = intake_of({"prompt": "p", "lora": json.dumps({"uri": uri, "scale": 0.8})})
        with pytest.raises(APIError) as info:
            check_server_paths(validate_row(intake, VID), prefixes, intake)
        assert (info.value.body.param, info.value.body.code) == ("lora[0].uri", "forbidden_path")
    intake = intake_of({"prompt": "p", "lora": json.dumps([{"uri": "s3://team/loras/style.safetensors"}])})
    check_server_paths(validate_row(intake, VID), ["s3://team/loras/"], intake)


def test_the_rayservice_in_the_repo_starts_the_same_typed_builder_with_valid_args():
    path = REPO / "cluster" / "rayservice.yaml"
    if not path.exists():
        pytest.skip("no cluster/rayservice.yaml")
    service = yaml.safe_load(path.read_text())
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    for app in serve_config["applications"]:
        assert app["import_path"] == "ltx_ray.serve.app:build_app"
        ServeArgs.model_validate(app["args"])
