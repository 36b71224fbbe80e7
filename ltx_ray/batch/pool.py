"""The pool of generation actors: ``--replicas N`` (fixed) or ``--replicas MIN:MAX`` (autoscaling);
and a run's several pools (``--pool``), rows routed to them by size.

A fixed pool starts every replica at once and keeps it to the end: right for a fleet of
GPUs reserved for the night. An autoscaling pool starts MIN replicas, adds replicas while
every replica is busy and jobs wait, as far as the cluster has room for them (GPU nodes
that join mid-run, a KubeRay autoscaler adding nodes), up to MAX, and lets idle replicas go
when the jobs run out, so the tail of a night does not hold GPUs that have nothing to do.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from ltx_ray.schema.parallel import PARALLEL_HELP, Parallel, ParallelMode
from ltx_ray.schema.replicas import Replicas


def actor_pool(replicas: Replicas, tasks_in_flight: int):
    """The Ray Data compute strategy of the generation stage."""
    import ray.data

    # One task in flight per actor keeps a minute-long job from queueing behind another on
    # a busy actor. The price is Ray Data's dispatch gap (its loop polls every 0.1 s) between
    # two jobs on one actor, negligible for GPU jobs of tens of seconds (bench/fleet.py
    # measures both settings). With two in flight the calls run on two threads: job k muxes
    # and uploads while job k+1 denoises (JobRunner lets one job at a time use the engine).
    if replicas.fixed:
        sizes = {"size": replicas.min}  # every replica started at once
    else:
        sizes = {"min_size": replicas.min, "max_size": replicas.max}
    return ray.data.ActorPoolStrategy(
        **sizes,
        max_tasks_in_flight_per_actor=tasks_in_flight,
        max_concurrent_calls_per_actor=tasks_in_flight,
        enable_true_multi_threading=tasks_in_flight > 1,
    )


def configure_autoscaling(ctx) -> None:
    """Let an autoscaling pool grow when every replica is busy and jobs wait.

    Ray Data grows a pool when its utilization (tasks in flight / task slots) reaches a
    threshold, 1.75 by default: it expects actors to queue a second task. A replica here
    holds as many tasks as it runs (``max_tasks_in_flight_per_actor`` equal to its
    concurrency), so its utilization never passes 1.0 and the default would never add a
    replica. At 1.0 the pool grows exactly when every replica is busy; Ray Data's backlog-
    aware autoscaler (the 2.60 default) then sizes the pool to the jobs it sees waiting, as
    far as free resources allow, rather than one actor at a time. Fixed pools ignore it.
    """
    ctx.autoscaling_config.actor_pool_util_upscaling_threshold = 1.0


SIZE = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*")
POOL_KEYS = {"replicas", "gpus", "cpus", "parallel", "min_pixels"}


class Pool(BaseModel):
    """One pool of a run that mixes pools (``--pool``), e.g. ``big:replicas=1,gpus=4,parallel=ulysses,
    min_pixels=1920x1088x121``: a row goes to the pool with the largest ``min_pixels`` at or under
    its width x height x frames, so one pool takes the small rows and another the large ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="names the pool in logs, plans and results rows")
    replicas: Replicas = Field(default=Replicas(min=1, max=1), description="N or MIN:MAX, as --replicas")
    gpus: float | None = Field(default=None, ge=0, description="GPUs per replica, as --gpus-per-replica "
                               "(default 1 on cuda, 0 on cpu)")
    cpus: float | None = Field(default=None, gt=0, description="CPUs per replica (default --cpus-per-replica)")
    parallel: ParallelMode = Field(default="none", description=PARALLEL_HELP)
    min_pixels: int = Field(default=0, ge=0, description="smallest width x height x frames this pool takes "
                            "(an integer or WxHxF); 0 for the pool of the smallest rows")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value):
        """``NAME:key=value,...``; bad keys and values name the fix."""
        if not isinstance(value, str):
            return value
        name, colon, rest = value.partition(":")
        fields: dict = {"name": name.strip()}
        for item in filter(None, (part.strip() for part in rest.split(","))) if colon else []:
            key, equals, text = (s.strip() for s in item.partition("="))
            if not equals or key not in POOL_KEYS:
                raise ValueError(f"{item!r} in pool {value!r}: give key=value with a key among {', '.join(sorted(POOL_KEYS))}")
            size = SIZE.fullmatch(text) if key == "min_pixels" else None
            fields[key] = int(size[1]) * int(size[2]) * int(size[3]) if size else text
        return fields

    @model_validator(mode="after")
    def _ranks_fit(self):
        if self.parallel != "none":
            if self.gpus is None or self.gpus != int(self.gpus):
                raise ValueError(f"pool {self.name}: parallel={self.parallel} runs one rank per GPU; give gpus=N (N >= 2)")
            Parallel(mode=self.parallel, ranks=int(self.gpus))  # its own message when the count does not fit
        return self

    @model_serializer
    def _as_flag(self) -> str:
        # What `--pool` takes, so a dumped RunConfig validates again and `submit` forwards the flag.
        keys = {"replicas": str(self.replicas), "gpus": self.gpus, "cpus": self.cpus,
                "parallel": None if self.parallel == "none" else self.parallel, "min_pixels": self.min_pixels or None}
        given = ",".join(f"{k}={_plain(v)}" for k, v in keys.items() if v is not None)
        return f"{self.name}:{given}" if given else self.name

    def __str__(self) -> str:
        return self._as_flag()

    @property
    def layout(self) -> Parallel:
        """How a replica of this pool splits a clip: one rank per GPU, or one rank."""
        return Parallel(mode=self.parallel, ranks=int(self.gpus or 1) if self.parallel != "none" else 1)

    def claimed_gpus(self, device: str) -> float:
        """GPUs a replica claims from Ray: none for a CPU group of ranks (--device cpu runs the same command)."""
        if self.parallel != "none" and not device.startswith("cuda"):
            return 0.0
        return self.gpus or 0.0

    def describe(self, named: bool = True) -> str:
        """For log lines: "pool big: 1 replica(s) of 4 GPU(s) as 4 ranks (ulysses)"."""
        ranks = f" as {self.layout.ranks} ranks ({self.parallel})" if self.parallel != "none" else ""
        gpus = f" of {_plain(self.gpus)} GPU(s)" if self.gpus else ""  # None: by --device, not known yet (plan)
        text = f"{self.replicas.describe()}{gpus}{ranks}"
        return f"pool {self.name}: {text}" if named else text


def check_pools(pools: list[Pool]) -> None:
    """Every row has exactly one pool: distinct names and thresholds, one pool from 0 pixels."""
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise ValueError(f"pool names repeat ({', '.join(names)}): give each --pool its own name")
    thresholds = [p.min_pixels for p in pools]
    if len(set(thresholds)) != len(thresholds):
        raise ValueError(f"two pools share min_pixels ({thresholds}): a row's size must pick one pool")
    if pools and min(thresholds) != 0:
        raise ValueError(f"no pool takes rows under {min(thresholds)} pixels: leave min_pixels off one pool "
                         "(the pool of the smallest rows)")


def route(pools: list[Pool], width: int, height: int, num_frames: int) -> Pool:
    """The pool of a row of this size: the largest ``min_pixels`` at or under width x height x frames."""
    pixels = width * height * num_frames
    return max((p for p in pools if p.min_pixels <= pixels), key=lambda p: p.min_pixels)


def _plain(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
