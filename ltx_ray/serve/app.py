"""The Serve application: HTTP ingress replicas and a pool of generator replicas.

    VideosIngress x ingress_replicas (FastAPI, async, no GPU)  --handle-->  Generator x replicas (one job at a time)
                            \                                                 /
                             `---------- the job store: the durable queue ---'

Any ingress replica answers for any job: the queue, the leases and the progress live in the
job store (``ltx_ray.serve.dispatch``), never in a replica's memory.

``build_app(ServeArgs)`` is a typed application builder, so the same app starts from
``ltx-ray serve``, ``serve run ltx_ray.serve.app:build_app store=...`` or a Serve config
(``serve deploy``, a RayService's ``serveConfigV2``) whose ``args`` are ServeArgs fields.
"""

# No `from __future__ import annotations` here: Serve reads build_app's annotation at run
# time to turn a config's `args` into ServeArgs, and a string annotation would skip that.
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from ltx_ray.serve.config import ServeArgs


@serve.deployment(
    # One job at a time per replica: a replica holds one pipeline, and more requests would
    # only queue inside it where nobody can count or re-route them.
    max_ongoing_requests=1,
    # A job may run for many minutes; health checks stay answered because generation runs
    # in a sync method (Serve's threadpool), never on the replica's event loop.
    health_check_period_s=10,
    graceful_shutdown_timeout_s=5,
)
class Generator:
    """Loads the model once; runs jobs with the batch path's JobRunner."""

    def __init__(self, args: ServeArgs):
        import ray

        from ltx_ray.job.build import RunnerSpec
        from ltx_ray.replica.group import start_replica
        from ltx_ray.schema.profiles import default_dtype
        from ltx_ray.serve.jobs import StoreJobStore
        from ltx_ray.serve.worker import VideoWorker

        jobs = StoreJobStore(args.store)
        spec = RunnerSpec(
            model=args.model, out=jobs.outputs.root_uri, device=args.device,
            dtype=args.dtype or default_dtype(args.device), profile=args.profile, run_id=args.run_id,
            upsampler=args.upsampler, distilled_lora=args.distilled_lora, enhancer=args.enhancer,
            torch_threads=args.torch_threads, offload=args.offload, attention=args.attention, engine=args.engine,
            parallel=args.layout, **args.lever_flags(),
        )
        # One rank, or rank 0 of a group of ranks (--parallel): the batch path's replica either way.
        runner = start_replica(spec, node_id=ray.get_runtime_context().get_node_id())
        self.worker = VideoWorker(jobs, runner, runner.model.profile, lease_s=args.lease_s)

    def run(self, video_id: str, attempt: int) -> str:
        return self.worker.run(video_id, attempt)


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class VideosIngress:
    """The /v1/videos HTTP API; as many replicas as ``ingress_replicas`` (the queue is in the store)."""

    def __init__(self, args: ServeArgs, generator: DeploymentHandle):
        from ltx_ray.serve.jobs import StoreJobStore
        from ltx_ray.serve.metrics import ServeMetrics
        from ltx_ray.serve.security import ApiKeys, RemoteFetcher
        from ltx_ray.serve.service import VideoService

        keys = [k.get_secret_value() for k in args.api_keys]
        self.keys = ApiKeys.load(keys, args.api_keys_file, args.api_keys_env)
        jobs = StoreJobStore(args.store)
        jobs.root.check_writable()
        fetcher = RemoteFetcher(args.allow_remote_urls, args.max_remote_bytes)

        async def submit(video_id: str, attempt: int) -> str:
            return await generator.run.remote(video_id, attempt)

        self.service = VideoService(args, jobs, submit, fetcher, ServeMetrics())

    def __serve_build_asgi_app__(self):
        from ltx_ray.serve.routes import build_api

        return build_api(self.service, self.keys)


def build_app(args: ServeArgs) -> Application:
    """The application graph for ``serve.run`` / Serve configs."""
    from ltx_ray.job.record import new_run_id

    # One run id for the app's lifetime: every sidecar and results row it writes names it.
    args = args.model_copy(update={"run_id": args.run_id or new_run_id("serve-")})
    generator = Generator.options(
        **generator_replicas(args),
        ray_actor_options={"num_gpus": args.claimed_gpus, "num_cpus": args.cpus_per_replica},
    ).bind(args)
    return VideosIngress.options(num_replicas=args.ingress_replicas).bind(args, generator)


def generator_replicas(args: ServeArgs) -> dict:
    """A fixed number of generator replicas, or Serve autoscaling on the queue depth: every
    dispatched job is one request at the handle, queued there until a replica is free, and
    Serve counts queued and running requests against ``target_ongoing_requests`` = 1."""
    if args.replicas.fixed:
        return {"num_replicas": args.replicas.min}
    return {"autoscaling_config": {
        "min_replicas": args.replicas.min, "max_replicas": args.replicas.max, "target_ongoing_requests": 1,
        "upscale_delay_s": args.upscale_delay_s, "downscale_delay_s": args.downscale_delay_s,
    }}
