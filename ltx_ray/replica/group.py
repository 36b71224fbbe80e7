"""Start a replica: one rank, or a group of ranks that runs each clip together (issue 18).

    start_replica(spec, node_id) -> JobRunner
      one rank: job.build.build_runner(spec)
      N ranks (spec.parallel.ranks > 1), from the process that will be rank 0:
        1. cards: the replica's GPUs (Ray gave this process N); rank 0 keeps the first
        2. ranks 1..N-1: Ray actors pinned to this node, each on one of the other cards
           (with --device cpu: no card, no CPU claimed; the same command runs in tests)
        3. every rank joins one process group at rank 0's address and a free port
        4. every rank loads the engine; rank 0's is wrapped in a GroupEngine

The replica's resources are rank 0's claim (N GPUs, --cpus-per-replica CPUs), so Ray Data
and Serve count a replica as they always did; the other ranks claim nothing and are owned
by rank 0, so they die with it. Each rank sees one card, as ``cuda:0``.

One job in, one row out: rank 0 takes the job, hands each generate call to the other ranks
(started before its own), runs it, and alone decodes, muxes and writes; the other ranks hold
an engine only, no store, so they cannot write. A rank that dies, hangs past
``spec.rank_timeout_s`` or fails alone breaks the group: ``ReplicaFatal``, and the caller's
replica-fatal path (``job.runner.end_replica``) ends rank 0, which takes its ranks with it;
Ray Data or Serve starts a new replica, which builds a new group and runs the job again
(``dispatch_attempts`` counts it). Nothing was written by the broken one.
"""

from __future__ import annotations

import os
import socket
import time

from ltx_ray.engine.process_group import join
from ltx_ray.errors import ReplicaFatal
from ltx_ray.job.build import RunnerSpec, build_engine, build_runner
from ltx_ray.schema.parallel import Parallel


def start_replica(spec: RunnerSpec, node_id: str | None = None):
    """The JobRunner of one replica: this process alone, or rank 0 of a group of ranks."""
    ranks = spec.parallel.ranks
    if ranks == 1 or spec.runner:
        return build_runner(spec, node_id=node_id)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # 1. Cards: rank 0 keeps the first (CUDA is not initialised yet in this process).
    cards = _cards(spec)
    if cards[0] is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cards[0]
    # 2. Ranks 1..N-1 on this node; a dead rank is not restarted: the whole group is rebuilt.
    here = ray.get_runtime_context().get_node_id()
    remote = ray.remote(Rank).options(
        num_cpus=0, num_gpus=0, max_restarts=0, max_task_retries=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    )
    peers = [remote.remote(spec.model_dump_json(), rank, cards[rank]) for rank in range(1, ranks)]
    try:
        # 3. One process group; rank 0 listens, the others connect.
        address, port = ray.util.get_node_ip_address(), _free_port()
        joined = [peer.join.remote(address, port, ranks) for peer in peers]
        join(0, ranks, address, port, spec.device, spec.rank_timeout_s)
        _gather(joined, "joining the process group")
        # 4. Every rank loads the model at once; rank 0 leads the group.
        loaded = [peer.load.remote() for peer in peers]
        runner = build_runner(spec, node_id=node_id,
                              lead=lambda engine: GroupEngine(engine, peers, spec.parallel, spec.rank_timeout_s))
        _gather(loaded, "loading the model")
    except BaseException:
        for peer in peers:
            ray.kill(peer)
        raise
    return runner


class GroupEngine:
    """Rank 0's engine: each generate call runs on every rank, and the ranks must end it in step."""

    def __init__(self, engine, peers: list, parallel: Parallel, timeout_s: float):
        self.engine = engine
        self.peers = peers
        self.parallel = parallel
        self.timeout_s = timeout_s

    # What JobRunner and the sidecar read off an engine: rank 0's.
    @property
    def placement(self):
        return self.engine.placement

    @property
    def component_dtypes(self):
        return getattr(self.engine, "component_dtypes", None)

    @property
    def attention(self):
        return getattr(self.engine, "attention", None)

    @property
    def levers(self):
        return getattr(self.engine, "levers", None)

    def generate(self, job, inputs, on_step=None):
        import ray

        shared = ray.put(inputs)  # decoded once here; the other ranks read it from this node's object store
        pending = [peer.generate.remote(job, shared) for peer in self.peers]  # before rank 0 starts: collectives meet
        try:
            clip = self.engine.generate(job, inputs, on_step)
        except Exception as exc:
            self._settle(pending, failed=exc)
            raise  # every rank raised: the job's error (or out of memory, which JobRunner frees and retries)
        self._settle(pending, failed=None)
        return clip

    def free(self) -> None:
        """Out of memory: every rank frees what it holds before the retry."""
        pending = [peer.free.remote() for peer in self.peers]
        free = getattr(self.engine, "free", None)
        if free is not None:
            free()
        self._settle(pending, failed=None)

    def _settle(self, pending: list, failed: Exception | None) -> None:
        """Wait for ranks 1..N-1 to end the call rank 0 ended. In step: every rank returned, or
        every rank raised the same error. Otherwise the process group cannot be trusted for another job."""
        import ray

        ranks = self.parallel.ranks
        _, late = ray.wait(pending, num_returns=len(pending), timeout=self.timeout_s)
        if late:
            numbers = [rank for rank, ref in enumerate(pending, start=1) if ref in late]
            raise ReplicaFatal(f"rank(s) {numbers} of {ranks} did not end the call within {self.timeout_s:.0f} s of "
                               "rank 0 (hung in a collective?); the group is rebuilt")
        for rank, ref in enumerate(pending, start=1):
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                raise ReplicaFatal(f"rank {rank} of {ranks} died: {_first_line(exc)}; the group is rebuilt") from exc
            except Exception as exc:  # noqa: BLE001 - compared with rank 0's outcome
                # The same error on every rank is the job's (a deterministic failure); any other
                # mix (rank 0 stopped early and a peer timed out waiting for it) broke the group.
                cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the rank's own exception
                if failed is None or type(cause).__name__ != type(failed).__name__:
                    raise ReplicaFatal(f"rank {rank} of {ranks} failed otherwise than rank 0 ({_first_line(cause)}; "
                                       f"rank 0: {'no error' if failed is None else type(failed).__name__}); "
                                       "the group is rebuilt") from exc


class Rank:
    """Ranks 1..N-1 of a replica (a Ray actor): an engine and nothing that writes."""

    def __init__(self, spec_json: str, rank: int, card: str | None):
        if card is not None:  # before torch initialises CUDA in this process
            os.environ["CUDA_VISIBLE_DEVICES"] = card
        self.spec = RunnerSpec.model_validate_json(spec_json)
        self.rank = rank
        self.engine = None

    def join(self, address: str, port: int, world_size: int) -> None:
        join(self.rank, world_size, address, port, self.spec.device, self.spec.rank_timeout_s)

    def load(self) -> None:
        _, self.engine = build_engine(self.spec)

    def generate(self, job, inputs) -> float:
        """This rank's part of the clip; the clip stays here (frames never travel), only the seconds return."""
        started = time.perf_counter()
        self.engine.generate(job, inputs, None)
        return round(time.perf_counter() - started, 3)

    def free(self) -> None:
        free = getattr(self.engine, "free", None)
        if free is not None:
            free()


def _cards(spec: RunnerSpec) -> list[str | None]:
    """The card of each rank: this process's GPUs (Ray's ids) on cuda, none on the CPU."""
    ranks = spec.parallel.ranks
    if not spec.device.startswith("cuda"):
        return [None] * ranks
    import ray

    gpus = [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    if len(gpus) < ranks:
        raise ReplicaFatal(f"--parallel {spec.parallel.mode} over {ranks} ranks needs {ranks} GPUs in the replica and "
                           f"Ray gave it {len(gpus)}: set --gpus-per-replica {ranks}")
    return gpus[:ranks]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _gather(refs: list, what: str) -> None:
    import ray

    try:
        ray.get(refs)
    except ray.exceptions.RayActorError as exc:
        raise ReplicaFatal(f"a rank died while {what}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
