"""What the Serve app exports for a cluster operator, through Ray's metrics API.

Served on the metrics export port of the node running the ingress replica, with Ray's
``ray_`` prefix (and ``_total`` for counters), beside Serve's own ``ray_serve_*`` metrics:

- ``ray_ltx_ray_serve_queue_depth``: video jobs an ingress replica dispatches, queued or
  running; summed over the ingress replicas, the app's queue (``max_pending_jobs`` bounds
  it: a POST answers 429 at that depth). Ray's agent drops a gauge not set for two export
  intervals (20 s), so each ingress's watcher sets it again every ``watch_interval_s``.
- ``ray_ltx_ray_serve_lease_expiries_total``: running jobs taken back from a generator
  replica whose lease ran out (it died) or that made no progress for ``stale_after_s``, and
  re-queued or failed. Like every Ray counter it appears at its first increment: read it as
  ``... or vector(0)``.
"""

from __future__ import annotations


class ServeMetrics:
    """The ingress's metrics; made in the ingress replica's ``__init__`` (Ray metrics belong to their process)."""

    def __init__(self):
        from ray.util.metrics import Counter, Gauge

        self._queue = Gauge("ltx_ray_serve_queue_depth",
                            description="Video jobs this ingress replica dispatches, queued or running (sum over replicas).")
        self._lease_expiries = Counter(
            "ltx_ray_serve_lease_expiries",
            description="Running jobs taken back from a generator whose lease ran out or that stopped progressing.",
        )
        self._queue.set(0)

    def queue_depth(self, jobs: int) -> None:
        self._queue.set(jobs)

    def lease_expired(self) -> None:
        self._lease_expiries.inc()


class NoMetrics:
    """For a VideoService outside Ray (orchestration tests): records nothing."""

    def queue_depth(self, jobs: int) -> None:
        pass

    def lease_expired(self) -> None:
        pass
