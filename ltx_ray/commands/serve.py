"""``ltx-ray serve``: the /v1/videos endpoint on Ray Serve, until interrupted."""

from __future__ import annotations

import signal
import time

# Every ServeArgs field is a flag of the same name (`--max-upload-bytes`), its description the
# help, so the command line, `serve run` configs and the RayService YAML cannot drift; only the
# keys are spelled for a command line (one --api-key per key, --api-key-file).
SPELLED = {"api_keys", "api_keys_file"}


def serve_flags() -> list[str]:
    from ltx_ray.serve.config import ServeArgs

    return [name for name in ServeArgs.model_fields if name not in SPELLED]


def add_parser(sub) -> str:
    from ltx_ray.commands.flags import add_model_flags
    from ltx_ray.serve.config import ServeArgs

    p = sub.add_parser("serve", help="serve the OpenAI-style /v1/videos API on Ray Serve")
    add_model_flags(p, ServeArgs, serve_flags())
    # Flags of the command itself, or spelled for a command line (one --api-key per key).
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (0.0.0.0 to listen on every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--api-key", action="append", default=[], help="accepted bearer token (repeatable)")
    p.add_argument("--api-key-file", default=None, help="file with one accepted key per line")
    return "serve"


def serve_args_from_cli(args):
    from pydantic import ValidationError

    from ltx_ray.commands.flags import flag_values
    from ltx_ray.errors import RunFatal
    from ltx_ray.serve.config import ServeArgs

    values = flag_values(args, serve_flags(), ServeArgs)
    try:
        return ServeArgs(**values, api_keys=args.api_key, api_keys_file=args.api_key_file)
    except ValidationError as exc:  # flags that do not fit together: one line each, exit 2
        raise RunFatal("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def main(args) -> int:
    import ray
    from ray import serve

    from ltx_ray.errors import RunFatal
    from ltx_ray.job.build import check_attention, check_levers
    from ltx_ray.schema.levers import Levers
    from ltx_ray.schema.profiles import default_dtype
    from ltx_ray.serve.app import build_app
    from ltx_ray.serve.security import ApiKeys

    serve_args = serve_args_from_cli(args)
    check_attention(serve_args.attention, serve_args.device)  # before any replica starts
    # The flags given (a profile's own levers are checked by each replica, which knows the profile).
    check_levers(serve_args.levers(Levers()), serve_args.device, serve_args.dtype or default_dtype(serve_args.device))
    try:
        keys = ApiKeys.load([k.get_secret_value() for k in serve_args.api_keys], serve_args.api_keys_file,
                            serve_args.api_keys_env)
    except OSError as exc:
        raise RunFatal(f"--api-key-file: {exc}") from None
    if not keys.required and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: no API key set and listening on {args.host}: anyone who can reach it can generate")
    if args.model == "tiny":
        print("note: using the embedded tiny LTX-2 (random weights): the videos are noise. Pass --model for real weights.")
    # Ctrl-C stops the server even where it was started with SIGINT ignored (a background job of
    # a script inherits that, and so did this command under such a test run).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # No --address means a fresh local Ray, even when `ray start` left a cluster here (as run does).
    ray.init(address=args.address or "local", include_dashboard=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(serve_args), name="ltx-ray", route_prefix="/")
        print(f"serving http://{args.host}:{args.port}/v1/videos (store {serve_args.store}); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    finally:
        _stop(serve, ray)


def _stop(serve, ray, timeout_s: float = 60.0) -> None:
    """Serve's apps and actors down, then the Ray connection; bounded, so Ctrl-C always ends the
    process (a Serve shutdown on a busy shared cluster has been seen to outlast two minutes)."""
    import threading

    shutdown = threading.Thread(target=serve.shutdown, name="serve-shutdown", daemon=True)
    shutdown.start()
    shutdown.join(timeout_s)
    if shutdown.is_alive():
        print(f"warning: Serve did not shut down within {timeout_s:.0f} s; its actors may still be on the cluster "
              "(`serve shutdown -a ADDRESS` removes them)", flush=True)
    ray.shutdown()
    print("stopped", flush=True)
