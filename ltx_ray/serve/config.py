"""``ServeArgs``: every knob of the Serve app, typed, for ``ltx-ray serve`` and Serve configs.

A Serve config (``serve run`` / ``serve deploy`` / a RayService's ``serveConfigV2``) names
``ltx_ray.serve.app:build_app`` as its import path and these fields as its ``args``; Serve
validates the args against this model before anything starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from ltx_ray.job.build import ATTENTION_HELP, Attention
from ltx_ray.schema.fields import MAX_PROMPT_CHARS
from ltx_ray.schema.levers import LeverFlags
from ltx_ray.schema.parallel import PARALLEL_HELP, Parallel, ParallelMode
from ltx_ray.schema.replicas import Replicas


class ServeArgs(LeverFlags):
    """Arguments of the Serve application (``build_app``), the speed levers' settings included."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Directory or fsspec URI holding job records, uploads and outputs; "
                       "the same store after a restart keeps every job.")
    model: str = Field(default="tiny", description="'tiny' (random weights), a local folder, an object-store URI or a hub id.")
    served_model_name: str | None = Field(default=None, description="The `model` reported on videos when a request names none; default --model.")
    device: str = Field(default="cpu", description="Torch device of each generator replica.")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="Weights and compute dtype (default: bfloat16 on cuda, float32 on cpu).")
    profile: str | None = Field(default=None, description="The model's generation profile (default: detected from its configs).")
    upsampler: str | None = Field(default=None, description="x2 latent upsampler folder (local or URI) for two-stage "
                                  "requests, instead of the model's latent_upsampler/.")
    distilled_lora: str | None = Field(default=None, description="Stage-2 distilled LoRA file (local or URI) for two-stage "
                                       "requests on a dev model, instead of the profile's file at the model's root.")
    enhancer: str | None = Field(default=None, description="prompt enhancer folder (local or URI) for enhance_prompt requests: "
                                 "a Gemma 3 processor (LTX-2.0 / 2.3), google/gemma-4-E2B-it (LTX-2.5)")
    replicas: Replicas = Field(default=Replicas(min=1, max=1), description="Generator replicas, each running one job "
                               "at a time: N (fixed) or MIN:MAX (Serve autoscaling on the queue: a replica more "
                               "while jobs wait, up to MAX; idle ones go, down to MIN).")
    ingress_replicas: int = Field(default=1, ge=1, description="HTTP ingress replicas. The queue is the job store, "
                                  "so any replica answers for any job and a dead one loses nothing.")
    upscale_delay_s: float = Field(default=10.0, ge=0, description="With replicas MIN:MAX: how long jobs must wait "
                                   "before another generator replica starts.")
    downscale_delay_s: float = Field(default=300.0, ge=0, description="With replicas MIN:MAX: how long a generator "
                                     "replica stays idle before it goes.")
    gpus_per_replica: float | None = Field(default=None, ge=0, description="GPUs reserved by each generator replica; "
                                           "default 1 with a cuda device, 0 on cpu. Its components are placed over them, or with "
                                           "--parallel each runs one rank.")
    cpus_per_replica: float = Field(default=1, ge=0, description="CPUs reserved by each generator replica.")
    parallel: ParallelMode = Field(default="none", description=f"With --gpus-per-replica N, {PARALLEL_HELP}: a replica "
                                   "is N ranks, one per GPU (with --device cpu, N CPU ranks claiming no GPU).")
    torch_threads: int | None = Field(default=None, ge=1, description="Torch CPU threads per replica; default all cores.")
    attention: Attention = Field(default="native", description=ATTENTION_HELP)
    offload: Literal["auto", "none", "model", "group"] = Field(
        default="auto", description="CPU offload of model components when a replica's GPUs cannot hold them (as `ltx-ray run --offload`).")
    engine: str = Field(default="ltx2", description="'ltx2', or 'module:callable' building a stand-in engine (tests, benchmarks).")
    run_id: str | None = Field(default=None, description="Names the app's sidecars and results rows; default serve-<UTC time>-<random>.")

    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted bearer tokens. Prefer api_keys_file or "
                                      "api_keys_env in configs: a key written here is readable by anyone who reads the config.")
    api_keys_file: str | None = Field(default=None, description="A file with one accepted key per line (# comments allowed).")
    api_keys_env: str | None = Field(default="LTX_RAY_API_KEYS", description="An environment variable holding comma-separated keys.")

    allow_remote_urls: bool = Field(default=False, description="Fetch http(s) image URLs named in requests. Even then, "
                                    "loopback, private, link-local and other non-public addresses are refused.")
    lora_prefixes: list[str] = Field(default_factory=list, description="Folders or URI prefixes that LoRA weights named "
                                     "in requests (lora / loras[].uri, ic_lora) must lie under; empty: requests name no LoRA, "
                                     "so no request makes the server read a path of its choosing.")
    max_upload_bytes: int = Field(default=32 * 2**20, ge=1024, description="Largest request body (all file parts together).")
    max_remote_bytes: int = Field(default=32 * 2**20, ge=1024, description="Largest file fetched from a remote URL.")
    max_prompt_chars: int = Field(default=MAX_PROMPT_CHARS, ge=1, le=MAX_PROMPT_CHARS, description="Longest prompt accepted.")
    max_frame_pixels: int = Field(default=1920 * 1088 * 257, ge=32 * 32 * 9,
                                  description="Largest width x height x num_frames of one video.")
    max_pending_jobs: int = Field(default=64, ge=1, description="Queued + running jobs before POST answers 429.")
    max_attempts: int = Field(default=2, ge=1, description="Runs of a job whose worker died before it is marked failed.")
    watch_interval_s: float = Field(default=5.0, gt=0, description="How often each ingress replica renews its leases "
                                    "and looks for lost or stalled jobs.")
    lease_s: float = Field(default=30.0, gt=0, description="How long a job stays held (by the ingress replica dispatching "
                           "it, then the generator replica running it) without a heartbeat; a dead holder's job is "
                           "taken back after this long. At least 3 x watch_interval_s.")
    stale_after_s: float = Field(default=900.0, gt=0, description="A running job with no progress for this long is "
                                 "taken as lost with its worker and re-queued (or failed after max_attempts).")
    poll_after_ms: int = Field(default=1000, ge=10, description="The openai-poll-after-ms header on reads.")

    @model_validator(mode="after")
    def _gpus_follow_the_device(self):
        # A Serve config naming device: cuda and no GPUs would start replicas Ray gives no GPU
        # (CUDA_VISIBLE_DEVICES empty): the model would not find its card.
        if self.gpus_per_replica is None:
            self.gpus_per_replica = 1 if self.device.startswith("cuda") else 0
        return self

    @model_validator(mode="after")
    def _leases_outlive_sweeps(self):
        if self.lease_s < 3 * self.watch_interval_s:
            raise ValueError(f"lease_s {self.lease_s:g} is less than 3 x watch_interval_s ({self.watch_interval_s:g}): "
                             "an ingress replica renews its leases once a sweep, so they would run out under it; "
                             f"raise lease_s to at least {3 * self.watch_interval_s:g}")
        return self

    @model_validator(mode="after")
    def _ranks_fit(self):
        if self.parallel != "none" and (self.gpus_per_replica < 2 or not float(self.gpus_per_replica).is_integer()):
            raise ValueError(f"--parallel {self.parallel} runs one rank per GPU of a replica: give --gpus-per-replica N, "
                             "a whole N >= 2 (with --device cpu: N CPU ranks)")
        self.layout  # cfg-ulysses: an even count
        return self

    @property
    def layout(self) -> Parallel:
        """How a replica splits a clip: one rank per GPU with --parallel, else one rank."""
        return Parallel(mode=self.parallel, ranks=int(self.gpus_per_replica) if self.parallel != "none" else 1)

    @property
    def claimed_gpus(self) -> float:
        """GPUs a replica claims from Ray: none for a CPU group of ranks (--device cpu runs the same app)."""
        return 0.0 if self.parallel != "none" and not self.device.startswith("cuda") else self.gpus_per_replica
