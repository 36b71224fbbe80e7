"""The run report: ``{out}/_runs/{run_id}/report.html``, a page a person opens to review a run.

Built from the results table and the sidecars only (so it can be rebuilt at any time):
per product (``metadata.product`` or ``metadata.sku``) a card per job with its animated
preview and thumbnail, status, error, QC scores with failed checks highlighted, every
attempt's seed, timings and links to the mp4 and sidecar; above them the run's totals
(videos, seconds of video, GPU-seconds, cost at a $/GPU-hour). Every link is relative, so
the output folder can be copied or served as it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import jinja2
from pydantic import BaseModel, Field

from ltx_ray.storage.results import read_results
from ltx_ray.storage.store import OutputStore

OTHER = "Other jobs"


class ReportTotals(BaseModel):
    """The run's numbers at the top of the page (jobs generated in this run only)."""

    jobs: int = Field(description="Jobs on the page")
    succeeded: int
    failed: int
    from_earlier_runs: int = Field(description="Jobs already done by an earlier run (skipped by this one)")
    videos: int = Field(description="Accepted videos generated in this run")
    video_seconds: float = Field(description="Seconds of accepted video generated in this run")
    attempts: int = Field(description="Videos generated in this run, QC retries included")
    replica_seconds: float = Field(description="Time replicas spent on this run's jobs, every stage and attempt")
    gpu_seconds: float = Field(description="Generate time (every attempt) x GPUs per replica, as in summary.json")
    gpu_hour_usd: float | None = Field(description="Price used for cost; None: not given")
    cost_usd: float | None = Field(description="gpu_seconds / 3600 x gpu_hour_usd")


def build_report(
    store: OutputStore,
    run_id: str,
    *,
    job_ids: set[str] | None = None,
    gpus_per_job: float | dict[str, float] = 1.0,
    gpu_hour_usd: float | None = None,
    summary: dict[str, Any] | None = None,
) -> tuple[str, ReportTotals]:
    """The report's HTML and totals: rows of ``run_id`` plus those of ``job_ids`` done earlier."""
    rows = [
        r for r in read_results(store).to_pylist()
        if r["run_id"] == run_id or (job_ids is not None and r["job_id"] in job_ids)
    ]
    rows.sort(key=lambda r: r["job_id"])
    sidecars = _sidecars(store, rows)
    here = f"_runs/{run_id}"
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        card = _card(store, here, row, sidecars.get(row["job_id"]), run_id)
        groups[card["product"] or OTHER].append(card)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] == OTHER, kv[0]))

    mine = [r for r in rows if r["run_id"] == run_id]
    replica_s = sum(sum(dict(r["timings"] or []).values()) for r in mine)

    def gpus(row: dict) -> float:  # a run of several pools (--pool): each row at its pool's GPUs per replica
        return gpus_per_job.get(row["pool"], 0.0) if isinstance(gpus_per_job, dict) else gpus_per_job

    gpu_s = sum(dict(r["timings"] or []).get("generate", 0.0) * gpus(r) for r in mine)
    totals = ReportTotals(
        jobs=len(rows),
        succeeded=sum(r["status"] == "succeeded" for r in rows),
        failed=sum(r["status"] == "failed" for r in rows),
        from_earlier_runs=len(rows) - len(mine),
        videos=sum(r["status"] == "succeeded" for r in mine),
        video_seconds=round(sum(r["duration_s"] or 0 for r in mine if r["status"] == "succeeded"), 3),
        attempts=sum(r["attempts"] or (1 if r["video_uri"] else 0) for r in mine),
        replica_seconds=round(replica_s, 3),
        gpu_seconds=round(gpu_s, 3),
        gpu_hour_usd=gpu_hour_usd,
        cost_usd=None if gpu_hour_usd is None else round(gpu_s / 3600 * gpu_hour_usd, 4),
    )
    html = _TEMPLATE.render(
        run_id=run_id, groups=ordered, totals=totals, gpus_per_job=gpus_per_job, summary=summary or {},
        out=store.root_uri, made=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return html, totals


def write_report(store: OutputStore, run_id: str, **kwargs: Any) -> str:
    """Build the report and put it at ``_runs/{run_id}/report.html``; returns its URI."""
    html, _ = build_report(store, run_id, **kwargs)
    return store.put(f"_runs/{run_id}/report.html", html.encode())


def _sidecars(store: OutputStore, rows: list[dict]) -> dict[str, dict]:
    """Every sidecar the rows point to, fetched in one call (fsspec fetches in parallel on object stores)."""
    paths = {_name(store, r["sidecar_uri"]): r["job_id"] for r in rows if r["sidecar_uri"]}
    paths = {store.path(name): job for name, job in paths.items() if name}
    if not paths:
        return {}
    found = store.fs.cat(list(paths), on_error="omit")
    return {paths[p]: json.loads(data) for p, data in found.items() if p in paths}


def _name(store: OutputStore, uri: str | None) -> str | None:
    """A URI under the output root as its name relative to the root (None when it is elsewhere)."""
    if uri and uri.startswith(store.root_uri + "/"):
        return uri[len(store.root_uri) + 1:]
    return None


def _card(store: OutputStore, here: str, row: dict, sidecar: dict | None, run_id: str) -> dict:
    depth = "../" * len(here.split("/"))

    def link(uri: str | None) -> str | None:
        name = _name(store, uri)
        return depth + name if name else None

    metadata = json.loads(row["metadata"]) if row["metadata"] else {}
    qc = json.loads(row["qc"]) if row["qc"] else None
    outputs = (sidecar or {}).get("outputs", {})
    last = qc["attempts"][-1]["checks"] if qc and qc.get("attempts") else {}
    timings = dict(row["timings"] or {})
    return {
        "job_id": row["job_id"],
        "product": metadata.get("product") or metadata.get("sku"),
        "variant": metadata.get("variant"),
        "title": metadata.get("title"),
        "status": row["status"],
        "earlier": row["run_id"] != run_id,
        "run_id": row["run_id"],
        "error": row["error"],
        "error_stage": row["error_stage"],
        "prompt": ((sidecar or {}).get("job") or {}).get("prompt"),
        "video": link(row["video_uri"]),
        "sidecar": link(row["sidecar_uri"]),
        "thumbnail": link(row["thumbnail_uri"]),
        "preview": link(outputs.get("preview_uri")),
        "size": f"{row['width']}x{row['height']}" if row["width"] else None,
        "duration_s": row["duration_s"],
        "task": row["task"],
        "checks": last,
        "attempts": qc["attempts"] if qc else [],
        "timings": timings,
        "total_s": round(sum(timings.values()), 2),
    }


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>ltx-ray run {{ run_id }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.totals{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.totals div{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px}
.totals b{display:block;font-size:18px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px;width:300px}
.card.failed{border-color:#c62828;box-shadow:0 0 0 1px #c62828}
.media{display:flex;gap:6px;align-items:flex-start} .media img{max-width:144px;max-height:160px;border-radius:4px;background:#eee}
.status{font-weight:600;padding:1px 6px;border-radius:4px;font-size:12px}
.status.succeeded{background:#e3f4e5;color:#1b5e20} .status.failed{background:#fde7e7;color:#b71c1c}
.earlier{color:#777;font-size:12px} .error{color:#b71c1c;white-space:pre-wrap;font-size:12px}
table.qc{border-collapse:collapse;font-size:12px;margin-top:6px;width:100%}
table.qc td,table.qc th{border-bottom:1px solid #eee;padding:2px 4px;text-align:left}
tr.fail{background:#fde7e7;color:#b71c1c;font-weight:600} tr.na{color:#999}
.prompt{font-size:12px;color:#555;max-height:4.2em;overflow:hidden} .small{font-size:12px;color:#555}
</style></head><body>
<h1>Run {{ run_id }}</h1>
<div class="small">{{ out }} &middot; report made {{ made }}{% if summary.wall_s is defined %} &middot; run took {{ "%.1f"|format(summary.wall_s) }} s{% endif %}</div>
<div class="totals">
<div><b>{{ totals.jobs }}</b>jobs</div>
<div><b>{{ totals.succeeded }}</b>succeeded</div>
<div><b>{{ totals.failed }}</b>failed</div>
<div><b>{{ totals.from_earlier_runs }}</b>done by earlier runs</div>
<div><b>{{ totals.videos }}</b>videos made</div>
<div><b>{{ "%.1f"|format(totals.video_seconds) }}</b>seconds of video</div>
<div><b>{{ totals.attempts }}</b>generations (QC retries included)</div>
<div><b>{{ "%.1f"|format(totals.gpu_seconds) }}</b>GPU-seconds (generate x {{ gpus_per_job }} GPU/replica; {{ "%.1f"|format(totals.replica_seconds) }} replica-s in all)</div>
<div><b>{% if totals.cost_usd is not none %}${{ "%.2f"|format(totals.cost_usd) }}{% else %}&mdash;{% endif %}</b>cost {% if totals.gpu_hour_usd is not none %}at ${{ totals.gpu_hour_usd }}/GPU-hour{% else %}(pass --gpu-hour-usd){% endif %}</div>
</div>
{% for product, cards in groups %}
<h2>{{ product }}{% if cards[0].title and product != "Other jobs" %} &middot; {{ cards[0].title }}{% endif %}</h2>
<div class="grid">
{% for c in cards %}
<div class="card {{ c.status }}" id="{{ c.job_id }}">
<div><b>{{ c.job_id }}</b> <span class="status {{ c.status }}">{{ c.status }}</span>
{% if c.earlier %}<span class="earlier">from run {{ c.run_id }}</span>{% endif %}</div>
<div class="small">{{ c.task or "" }} {{ c.size or "" }}{% if c.duration_s %} &middot; {{ "%.2f"|format(c.duration_s) }} s{% endif %} &middot; {{ c.total_s }} s of work</div>
{% if c.preview or c.thumbnail %}<div class="media">
{% if c.preview %}<img src="{{ c.preview }}" alt="animated preview of {{ c.job_id }}" loading="lazy">{% endif %}
{% if c.thumbnail %}<img src="{{ c.thumbnail }}" alt="thumbnail of {{ c.job_id }}" loading="lazy">{% endif %}
</div>{% endif %}
{% if c.error %}<div class="error">{{ c.error_stage }}: {{ c.error }}</div>{% endif %}
{% if c.prompt %}<div class="prompt" title="{{ c.prompt }}">{{ c.prompt }}</div>{% endif %}
{% if c.checks %}<table class="qc"><tr><th>check</th><th>score</th><th>limit</th><th></th></tr>
{% for name, ch in c.checks.items() %}<tr class="{{ 'fail' if ch['pass'] is false else ('na' if ch['pass'] is none else 'ok') }}"><td>{{ name }}</td><td>{{ ch.score if ch.score is not none else "&ndash;"|safe }}</td><td>{{ ch.threshold if ch.threshold is not none else "off" }}</td><td>{{ "FAIL" if ch['pass'] is false else ("n/a" if ch['pass'] is none else "ok") }}</td></tr>
{% endfor %}</table>
<div class="small">attempts: {% for a in c.attempts %}#{{ a.attempt }} seed {{ a.seed }} {{ "pass" if a['pass'] else "fail" }}{% if not loop.last %}, {% endif %}{% endfor %}</div>{% endif %}
<div class="small">{% if c.video %}<a href="{{ c.video }}">mp4</a>{% endif %}{% if c.sidecar %} &middot; <a href="{{ c.sidecar }}">sidecar</a>{% endif %}
{% for k, v in c.timings.items() %} &middot; {{ k }} {{ "%.2f"|format(v) }}s{% endfor %}</div>
</div>
{% endfor %}
</div>
{% endfor %}
</body></html>
""")
