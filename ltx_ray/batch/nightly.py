"""A night's run: discover the manifests under a prefix, run what is not done, report.

    discover manifests -> hash each one -> skip those completed before (same content, same
    model) -> one ``ltx_ray.batch.run.run()`` over the rest -> mark the manifests whose every row
    succeeded -> ``{out}/_nightly/{date}/summary.json`` + ``report.html``

Idempotence comes from two layers. A manifest is *completed* once every one of its rows
succeeded; its marker ``{out}/_nightly/completed/{key}.json`` is keyed by the manifest's
content hash and the model, so a changed manifest (or a new model) counts as new. Inside a
run, ``run()`` already skips every job whose results row says succeeded for the same job
hash, so a retried manifest only regenerates its failed rows. The run id is scoped to the
date (``nightly-YYYY-MM-DD``): running the same night twice reuses it, and a failed night
leaves no marker, so the next night picks its manifests up again.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from datetime import datetime, timezone
from typing import Literal

import fsspec
from pydantic import BaseModel, Field

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.errors import ManifestError
from ltx_ray.storage.manifest import read_manifest_rows
from ltx_ray.storage.results import read_results
from ltx_ray.storage.store import OutputStore

NIGHTLY_DIR = "_nightly"


class ManifestOutcome(BaseModel):
    """What the night did with one manifest."""

    uri: str = Field(description="Manifest URI as discovered under the prefix")
    sha256: str = Field(description="sha256 of the manifest file's bytes")
    rows: int = Field(description="Rows in the manifest")
    action: Literal["run", "skipped", "unreadable"] = Field(
        description="skipped: completed by an earlier night with the same content and model; unreadable: not Parquet"
    )
    error: str | None = Field(default=None, description="Why an unreadable manifest could not be read")
    completed: bool = Field(description="Every row of the manifest has a succeeded results row")


class NightlySummary(BaseModel):
    """``{out}/_nightly/{date}/summary.json``."""

    date: str = Field(description="The night, YYYY-MM-DD")
    run_id: str = Field(description="Run id of the night's run (results rows carry it)")
    manifests_prefix: str
    out: str
    started_at: str = Field(description="UTC, ISO 8601")
    manifests_seen: int
    manifests_run: int
    manifests_skipped: int
    manifests_unreadable: int = Field(description="Files under the prefix that are not readable Parquet (the night fails)")
    rows: dict[str, int] = Field(description="Rows of the manifests run, per status: succeeded, failed, invalid, skipped (done before)")
    video_seconds: float = Field(description="Seconds of video generated tonight")
    gpu_seconds: float = Field(description="Sum over tonight's jobs of generate time x GPUs per replica (as the run reports it)")
    replica_seconds: float = Field(description="Sum over tonight's jobs of their time on a replica, all stages")
    wall_s: float = Field(description="Wall time of the whole night, discovery to report")
    manifests: list[ManifestOutcome]

    @property
    def exit_code(self) -> int:
        return 1 if self.rows.get("failed") or self.rows.get("invalid") or self.manifests_unreadable else 0


def discover_manifests(prefix: str) -> list[str]:
    """Every ``.parquet`` file under a folder or key prefix (``s3://b/manifests/`` or ``s3://b/m/2026-``).

    Paths with a ``_``- or ``.``-prefixed part are skipped, so an ``--out`` that lives under
    the prefix (its ``_nightly/``, ``_runs/``) or a half-uploaded hidden file is never taken
    for a manifest. An empty prefix is a night with nothing to do, not an error.
    """
    fs, root = fsspec.core.url_to_fs(prefix)
    root = root.rstrip("/") if fs.isdir(root) else root
    base = root if fs.isdir(root) else root.rsplit("/", 1)[0]
    if not fs.exists(base):
        return []
    fs.invalidate_cache(base)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    found = []
    for path in sorted(fs.find(base)):
        rel = path[len(base):]
        if not path.startswith(root) or not path.endswith(".parquet"):
            continue
        if any(part.startswith(("_", ".")) for part in rel.split("/") if part):
            continue
        found.append(path if protocol in ("file", "local") else f"{protocol}://{path}")
    return found


def completion_key(manifest_sha256: str, model: str) -> str:
    """Marker name of a completed manifest: new content or a new model means new work."""
    return hashlib.sha256(f"{manifest_sha256}\n{model}".encode()).hexdigest()[:32]


def nightly(prefix: str, date: str, template: RunConfig, log=print) -> NightlySummary:
    """Run the night of ``date`` over the manifests under ``prefix`` with ``template``'s options."""
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_id = f"nightly-{date}"
    store = OutputStore(template.out)
    store.check_writable()

    # 1. Discover and fingerprint; a manifest completed before with this content is skipped.
    outcomes: list[ManifestOutcome] = []
    job_ids: dict[str, list] = {}
    for uri in discover_manifests(prefix):
        fs, path = fsspec.core.url_to_fs(uri)
        sha = hashlib.sha256(fs.cat_file(path)).hexdigest()
        try:
            rows = read_manifest_rows(uri)
        except ManifestError as exc:
            # One broken upload must not stop the other manifests of the night: it is
            # reported (and fails the night) instead of being handed to run(), where it is fatal.
            log(f"nightly {date}: skipping {exc}")
            outcomes.append(ManifestOutcome(uri=uri, sha256=sha, rows=0, action="unreadable", completed=False, error=str(exc)))
            continue
        job_ids[uri] = [r.get("job_id") for r in rows]
        done = store.exists(f"{NIGHTLY_DIR}/completed/{completion_key(sha, template.model)}.json")
        outcomes.append(ManifestOutcome(uri=uri, sha256=sha, rows=len(rows), action="skipped" if done else "run", completed=done))
    pending = [o for o in outcomes if o.action == "run"]
    skipped = sum(o.action == "skipped" for o in outcomes)
    unreadable = sum(o.action == "unreadable" for o in outcomes)
    log(f"nightly {date}: {len(outcomes)} manifests under {prefix}, {len(pending)} to run, {skipped} completed before"
        + (f", {unreadable} unreadable" if unreadable else ""))

    # 2. One run over every pending manifest, so the replicas stay busy across manifests.
    rows = {"succeeded": 0, "failed": 0, "invalid": 0, "skipped": 0}
    video_seconds = gpu_seconds = replica_seconds = 0.0
    if pending:
        config = template.model_copy(update={"manifests": [o.uri for o in pending], "run_id": run_id})
        result = run(config, log=log)
        rows = {"succeeded": result.succeeded, "failed": result.failed, "invalid": result.invalid, "skipped": result.skipped}
        video_seconds, gpu_seconds, replica_seconds = result.video_seconds, result.gpu_seconds, result.replica_seconds

        # 3. Mark the manifests whose every row now has a succeeded results row.
        results = read_results(store).select(["job_id", "status"]).to_pylist()
        status = {r["job_id"]: r["status"] for r in results}
        for outcome in pending:
            outcome.completed = all(status.get(j) == "succeeded" for j in job_ids[outcome.uri])
            if outcome.completed:
                marker = {"uri": outcome.uri, "sha256": outcome.sha256, "model": template.model, "date": date, "run_id": run_id}
                store.put(f"{NIGHTLY_DIR}/completed/{completion_key(outcome.sha256, template.model)}.json", json.dumps(marker).encode())

    summary = NightlySummary(
        date=date, run_id=run_id, manifests_prefix=prefix, out=store.root_uri, started_at=started_at,
        manifests_seen=len(outcomes), manifests_run=len(pending), manifests_skipped=skipped,
        manifests_unreadable=unreadable,
        rows=rows, video_seconds=video_seconds, gpu_seconds=gpu_seconds, replica_seconds=replica_seconds,
        wall_s=round(time.perf_counter() - started, 3), manifests=outcomes,
    )
    failures = _failed_rows(store, [j for o in pending for j in job_ids[o.uri]])
    _keep_previous(store, date)
    run_report = f"_runs/{run_id}/report.html"
    store.put(f"{NIGHTLY_DIR}/{date}/summary.json", summary.model_dump_json(indent=2).encode())
    store.put(f"{NIGHTLY_DIR}/{date}/report.html", render_report(summary, failures, store.exists(run_report)).encode())
    log(f"nightly {date}: {summary.manifests_run} run, {summary.manifests_skipped} skipped, rows {rows}; "
        f"report: {store.uri(f'{NIGHTLY_DIR}/{date}/report.html')}")
    return summary


def _keep_previous(store: OutputStore, date: str) -> None:
    """A second invocation of a night must not erase the first one's record: move it aside."""
    name = f"{NIGHTLY_DIR}/{date}/summary.json"
    if not store.exists(name):
        return
    previous = json.loads(store.get(name))
    folder = f"{NIGHTLY_DIR}/{date}/previous/{previous['started_at'].replace(':', '')}"
    for file in ("summary.json", "report.html"):
        if store.exists(f"{NIGHTLY_DIR}/{date}/{file}"):
            store.put(f"{folder}/{file}", store.get(f"{NIGHTLY_DIR}/{date}/{file}"))


def _failed_rows(store: OutputStore, job_ids: list) -> list[dict]:
    wanted = {j for j in job_ids if isinstance(j, str)}
    table = read_results(store).select(["job_id", "status", "error_stage", "error"]).to_pylist()
    return [r for r in table if r["job_id"] in wanted and r["status"] == "failed"]


def render_report(summary: NightlySummary, failures: list[dict], link_run_report: bool = False) -> str:
    """A small self-contained HTML page: the night's numbers, its manifests, its failed rows."""
    e = html.escape
    numbers = [
        ("manifests seen / run / skipped / unreadable",
         f"{summary.manifests_seen} / {summary.manifests_run} / {summary.manifests_skipped} / {summary.manifests_unreadable}"),
        *((f"rows {k}", str(v)) for k, v in summary.rows.items()),
        ("video seconds", f"{summary.video_seconds:.1f}"),
        ("GPU seconds", f"{summary.gpu_seconds:.1f}"),
        ("replica seconds", f"{summary.replica_seconds:.1f}"),
        ("wall time", f"{summary.wall_s:.1f} s"),
    ]
    manifests = "".join(
        f"<tr><td>{e(m.uri)}</td><td>{m.rows}</td><td>{m.action}{': ' + e(m.error) if m.error else ''}</td>"
        f"<td>{'yes' if m.completed else 'no'}</td></tr>"
        for m in summary.manifests
    )
    failed = "".join(
        f"<tr><td>{e(str(f['job_id']))}</td><td>{e(str(f['error_stage']))}</td><td>{e(str(f['error']))}</td></tr>" for f in failures
    ) or "<tr><td colspan=3>none</td></tr>"
    state = "FAILED ROWS" if summary.exit_code else "OK"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ltx-ray nightly {e(summary.date)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.bad{{color:#b00}}</style></head>
<body><h1>ltx-ray nightly {e(summary.date)} <span class="{'bad' if summary.exit_code else ''}">{state}</span></h1>
<p>run <code>{e(summary.run_id)}</code>, manifests under <code>{e(summary.manifests_prefix)}</code>,
outputs in <code>{e(summary.out)}</code>, started {e(summary.started_at)}</p>
<table>{''.join(f'<tr><th>{e(k)}</th><td>{e(v)}</td></tr>' for k, v in numbers)}</table>
{f'<p>Every job of the night, with previews: <a href="../../_runs/{e(summary.run_id)}/report.html">the run report</a></p>' if link_run_report else ''}
<h2>Manifests</h2><table><tr><th>manifest</th><th>rows</th><th>tonight</th><th>completed</th></tr>{manifests}</table>
<h2>Failed rows</h2><table><tr><th>job</th><th>stage</th><th>error</th></tr>{failed}</table>
</body></html>
"""
