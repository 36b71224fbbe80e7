"""The pool of generation actors: ``--replicas N`` (fixed) or ``--replicas MIN:MAX`` (autoscaling).

A fixed pool starts every replica at once and keeps it to the end: right for a fleet of
GPUs reserved for the night. An autoscaling pool starts MIN replicas, adds replicas while
every replica is busy and jobs wait, as far as the cluster has room for them (GPU nodes
that join mid-run, a KubeRay autoscaler adding nodes), up to MAX, and lets idle replicas go
when the jobs run out, so the tail of a night does not hold GPUs that have nothing to do.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

RANGE = re.compile(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?")


class Replicas(BaseModel):
    """How many generation actors a run may hold: ``min`` == ``max`` is a fixed pool."""

    model_config = ConfigDict(frozen=True)

    min: int = Field(ge=1, description="replicas started before the first job, and kept to the end of the jobs")
    max: int = Field(ge=1, description="replicas the pool may grow to while jobs wait")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value):
        """``4`` / ``"4"``: a fixed pool of 4; ``"1:8"``: 1 to 8. Bad values name the fix."""
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number of replicas; give N or MIN:MAX (e.g. 4, or 1:8)")
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            return value  # {"min": .., "max": ..} or a Replicas
        match = RANGE.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not N or MIN:MAX; give a whole number (4: a fixed pool) or a range "
                             "(1:8: an autoscaling pool)")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if low < 1:
            fix = f"MIN >= 1 (e.g. 1:{high})" if match[2] is not None and high >= 1 else "at least 1"
            raise ValueError(f"{value!r}: a run needs at least one replica to make progress; give {fix}")
        if low > high:
            raise ValueError(f"{value!r}: MIN is more than MAX; give the smaller number first ({high}:{low})")
        return {"min": low, "max": high}

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max}")
        return self

    @model_serializer
    def _as_flag(self) -> int | str:
        # What `--replicas` takes, so a dumped RunConfig validates again (and a fixed pool
        # dumps as the plain int it always was).
        return self.min if self.fixed else f"{self.min}:{self.max}"

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def __str__(self) -> str:
        return str(self._as_flag())

    def describe(self) -> str:
        """For log lines: "4 replica(s)" or "1 to 8 replicas (autoscaling)"."""
        if self.fixed:
            return f"{self.min} replica(s)"
        return f"{self.min} to {self.max} replicas (autoscaling: more while jobs wait and the cluster has room)"


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
