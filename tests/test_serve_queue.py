"""The durable Serve queue: conditional writes on a folder and on S3, leases shared by several
ingress replicas, idempotent POSTs. Orchestration tests with a named fake generator
(``fake_generator``); the real app's replicas are killed in tests/test_serve_chaos.py."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from ltx_ray.serve.config import ServeArgs
from ltx_ray.serve.jobs import StoreJobStore
from ltx_ray.serve.protocol import JobRecord
from ltx_ray.storage.records import Records, tag_of
from ltx_ray.storage.store import OutputStore

JOB = {"prompt": "p", "size": "64x64", "num_frames": "9"}


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    import fsspec

    s3_endpoint = request.getfixturevalue("s3_endpoint")  # only the S3 case starts moto
    assert s3_endpoint
    bucket = f"ltx-ray-queue-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/serve"


def test_a_record_is_created_once_and_swapped_only_from_the_version_read(store_uri):
    records = Records(OutputStore(store_uri))
    assert records.create("jobs/a.json", b"first")
    assert not records.create("jobs/a.json", b"second")  # If-None-Match / exclusive create
    data, tag = records.read("jobs/a.json")
    assert (data, tag) == (b"first", tag_of(b"first"))
    assert records.swap("jobs/a.json", b"changed", tag)
    assert not records.swap("jobs/a.json", b"stale writer", tag)  # If-Match / compare under the lock
    assert records.read("jobs/a.json")[0] == b"changed"
    records.delete("jobs/a.json")
    assert records.read("jobs/a.json") is None
    assert not records.swap("jobs/a.json", b"resurrected", tag_of(b"changed"))
    assert records.read("jobs/a.json") is None


def test_concurrent_changes_from_many_writers_lose_no_update(store_uri):
    store = StoreJobStore(store_uri)
    video_id = f"video_{7:032x}"
    store.create(JobRecord(id=video_id, prompt="p", size="64x64", row={"prompt": "p"}, task="t2v", num_frames=9,
                           fps=24.0, seed=1))
    writers, each = 4, 6

    def bump():
        for _ in range(each):
            store.change(video_id, lambda r: r.model_copy(update={"progress": r.progress + 1}))

    threads = [threading.Thread(target=bump) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A read-then-write store loses increments here; compare-and-swap keeps every one.
    assert store.get(video_id).progress == writers * each


def test_a_store_without_conditional_writes_is_refused_by_name():
    with pytest.raises(ValueError, match="conditional writes"):
        StoreJobStore("memory://ltx-ray-queue")


class fake_generator:
    """Stands in for the generator deployment: claims a job as the real worker does (one
    compare-and-swap) and completes it, counting every run; ``dead`` replicas never answer."""

    def __init__(self, store: StoreJobStore, lease_s: float):
        from ltx_ray.serve.lease import new_holder

        self.store, self.lease_s, self.holder = store, lease_s, new_holder("generator")
        self.runs: list[str] = []
        self.dead = False

    async def submit(self, video_id: str, attempt: int) -> str:
        from ltx_ray.serve.lease import held

        if self.dead:
            await asyncio.Event().wait()  # a request stuck in a dead replica's queue
        claimed = self.store.change(video_id, lambda r: r.model_copy(update={
            "status": "in_progress", **held(self.holder, self.lease_s)})
            if r.status == "queued" and r.attempt == attempt else None)
        if claimed is None:
            return "skipped"
        self.runs.append(video_id)
        await asyncio.sleep(0.01)
        self.store.update(video_id, attempt, status="completed", progress=100, lease_owner=None, lease_expires_at=None)
        return "completed"


def test_jobs_a_dead_ingress_replica_was_dispatching_are_run_once_by_another(tmp_path):
    """Replica A accepts six jobs and dies with all of them waiting in its handle; replica B,
    on the same store, takes each back once its lease runs out and runs each exactly once."""
    from ltx_ray.serve.service import VideoService

    args = ServeArgs(store=str(tmp_path), watch_interval_s=0.1, lease_s=0.5, max_pending_jobs=64)
    store = StoreJobStore(args.store)
    gen_a, gen_b = fake_generator(store, args.lease_s), fake_generator(store, args.lease_s)
    gen_a.dead = True

    async def scenario():
        a = VideoService(args, store, gen_a.submit, fetcher=None)
        b = VideoService(args, store, gen_b.submit, fetcher=None)
        ids = [(await a.create(dict(JOB), {})).id for _ in range(6)]
        for task in list(a.dispatcher.inflight.values()):
            task.cancel()  # replica A is gone: no heartbeat, no dispatch
        started = time.monotonic()
        await b.start()
        while any(r.status != "completed" for r in store.list()):
            assert time.monotonic() - started < 30, "jobs never taken back"
            await asyncio.sleep(0.05)
        await b.dispatcher.sweep()  # one more sweep: nothing completed is taken back again
        b._watcher.cancel()
        return ids

    ids = asyncio.run(scenario())
    assert sorted(gen_b.runs) == sorted(ids)  # each once
    assert {(r.status, r.attempt) for r in store.list()} == {("completed", 1)}


def test_a_job_two_replicas_race_to_take_back_is_taken_once(tmp_path):
    from ltx_ray.serve.service import VideoService

    args = ServeArgs(store=str(tmp_path), watch_interval_s=0.1, lease_s=0.5)
    store = StoreJobStore(args.store)
    gen = fake_generator(store, args.lease_s)
    video_id = f"video_{9:032x}"
    store.create(JobRecord(id=video_id, status="in_progress", prompt="p", size="64x64", row={"prompt": "p"},
                           task="t2v", num_frames=9, fps=24.0, seed=1, lease_owner="generator-dead",
                           lease_expires_at=time.time() - 1))

    async def scenario():
        replicas = [VideoService(args, store, gen.submit, fetcher=None) for _ in range(4)]
        await asyncio.gather(*(r.dispatcher.sweep() for r in replicas))
        while any(r.dispatcher.inflight for r in replicas):
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert gen.runs == [video_id]
    assert (store.get(video_id).status, store.get(video_id).attempt) == ("completed", 2)


def test_a_post_retried_with_the_same_idempotency_key_gets_the_same_video(tmp_path):
    from ltx_ray.serve.service import VideoService

    args = ServeArgs(store=str(tmp_path))
    store = StoreJobStore(args.store)
    gen = fake_generator(store, args.lease_s)

    async def scenario():
        service = VideoService(args, store, gen.submit, fetcher=None)
        first = await service.create(dict(JOB), {}, idempotency="caller:key-1")
        again = await service.create(dict(JOB), {}, idempotency="caller:key-1")
        other = await service.create(dict(JOB), {}, idempotency="other-caller:key-1")
        while service.dispatcher.inflight:
            await asyncio.sleep(0.01)
        return first, again, other

    first, again, other = asyncio.run(scenario())
    assert first.id == again.id != other.id
    assert sorted(gen.runs) == sorted([first.id, other.id])
