"""What every benchmark shares: its argument conventions, its JSON output, a local Ray."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print the result as one JSON line (always the last stdout line)")
    p.add_argument("--save", action="store_true", help="also write it to bench/results/NAME.json")
    return p


def machine() -> dict:
    """The machine a number was measured on: numbers mean nothing without it."""
    import torch

    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(name: str, result: dict, args) -> dict:
    """Print the result as the last stdout line; write bench/results/NAME.json when --save."""
    result = {"bench": name, "machine": machine(), **result}
    line = json.dumps(result, sort_keys=False)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>28}: {value}", file=sys.stderr)
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(line, flush=True)
    return result


def start_ray(**kwargs):
    """A local Ray whose workers can import ``bench`` (stand-in runners live there)."""
    import ray

    if ray.is_initialized():
        return False
    # Workers inherit the environment of the raylet started here.
    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    return True
