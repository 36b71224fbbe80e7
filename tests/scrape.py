"""Read a Ray cluster's metrics the way Prometheus does: GET /metrics on every node's export port."""

from __future__ import annotations

import re
import time
import urllib.request

SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape() -> list[tuple[str, dict[str, str], float]]:
    """Every sample of every alive node of the connected cluster: (name, labels, value)."""
    import ray

    samples = []
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(LABEL.findall(match["labels"] or ""))
                samples.append((match["name"], labels, float(match["value"])))
    return samples


def total(samples, name: str, **labels: str) -> float:
    """The sum over processes (Ray labels each with its WorkerId) of ``name`` where ``labels`` match."""
    return sum(v for n, got, v in samples if n == name and all(got.get(k) == want for k, want in labels.items()))


def key(name: str, **labels: str) -> tuple:
    """A series for ``wait_for_increase``: its name and the labels it must have."""
    return name, tuple(sorted(labels.items()))


def wait_for_increase(before, wanted: dict[tuple, float], timeout_s: float = 30):
    """Scrape until each ``(name, labels)`` in ``wanted`` has grown by at least its value since ``before``.

    Actors flush their metrics when they exit; a process still alive (the driver) exports
    every ``metrics_report_interval_ms`` (10 s by default). Returns the last deltas seen, for
    the test to assert on: this only bounds the wait.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        now = scrape()
        deltas = {key: total(now, key[0], **dict(key[1])) - total(before, key[0], **dict(key[1])) for key in wanted}
        if all(deltas[key] >= want for key, want in wanted.items()) or time.monotonic() > deadline:
            return deltas
        time.sleep(0.5)


def wait_for_value(name: str, value: float, timeout_s: float = 30, **labels: str) -> list[float]:
    """Scrape until ``name`` (with ``labels``) is exported and sums to ``value``; returns the values last seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = [v for n, got, v in scrape() if n == name and all(got.get(k) == want for k, want in labels.items())]
        if (seen and sum(seen) == value) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)
