"""The pool of generation actors: ``--replicas N`` (fixed) or ``--replicas MIN:MAX`` (autoscaling).

A fixed pool starts every replica at once and keeps it to the end: right for a fleet of
GPUs reserved for the night. An autoscaling pool starts MIN replicas, adds replicas while
every replica is busy and jobs wait, as far as the cluster has room for them (GPU nodes
that join mid-run, a KubeRay autoscaler adding nodes), up to MAX, and lets idle replicas go
when the jobs run out, so the tail of a night does not hold GPUs that have nothing to do.
"""

from __future__ import annotations

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
