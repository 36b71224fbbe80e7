"""`ltx-ray run --recipe` end to end on real Ray and the tiny model, and its report in a real Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from ltx_ray.cli import main as cli_main
from ltx_ray.products.report import build_report
from ltx_ray.storage.manifest import read_manifest_rows, write_manifest
from ltx_ray.storage.store import OutputStore
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
# Noise passes these (it moves, is never blank, is loud); no noise can pass motion >= 250.
RECIPE = """
# test recipe: one i2v clip that passes QC, one t2v clip that never can
name: review
key: sku
metadata_columns: [title]
defaults: {width: 256, height: 160, num_frames: 17, audio: true}
qc: {min_motion: 1.0, max_blank_fraction: 0.0, min_audio_dbfs: -60, min_keyframe_ssim: null, max_attempts: 2}
variants:
  - name: hero
    image: "{image_front}"
    prompt: The {color} {title}, slow push-in.
  - name: still
    prompt: A {color} {title} standing still.
    qc: {min_motion: 250.0, max_attempts: 2}
"""


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]


@pytest.fixture(scope="module")
def recipe_run(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe-run")
    products = read_manifest_rows(str(REPO / "manifests" / "products.parquet"))[:1]
    for key in ("image_front", "image_side", "image_back"):
        products[0][key] = str(REPO / "manifests" / products[0][key])
    # a product without its hero photo: its i2v job cannot be made, the rest of the run goes on
    products.append({**products[0], "sku": "LMP-404", "title": "desk lamp", "image_front": None})
    write_manifest(products, str(tmp / "products.parquet"))
    (tmp / "review.yaml").write_text(RECIPE)
    out = tmp / "out"
    code = cli_main(["run", "--recipe", str(tmp / "review.yaml"), str(tmp / "products.parquet"), "--out", str(out),
                     "--run-id", "r1", "--gpu-hour-usd", "2.5"])
    results = {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}
    return code, out, results


def test_a_recipe_run_expands_products_to_jobs_named_by_sku_and_variant(recipe_run):
    code, out, results = recipe_run
    assert code == 1  # some rows failed, by design
    assert set(results) == {"SNK-001-hero", "SNK-001-still", "LMP-404-hero", "LMP-404-still"}
    expanded = pq.read_table(out / "_runs" / "r1" / "manifest.parquet").column("job_id").to_pylist()
    assert expanded == ["SNK-001-hero", "SNK-001-still", "LMP-404-still"]
    assert results["SNK-001-hero"]["status"] == "succeeded" and results["SNK-001-hero"]["task"] == "i2v"
    assert results["LMP-404-still"]["error_stage"] == "qc"
    assert json.loads(results["SNK-001-hero"]["metadata"])["product"] == "SNK-001"


def test_a_product_missing_a_photo_fails_its_job_at_the_recipe_stage(recipe_run):
    _, _, results = recipe_run
    row = results["LMP-404-hero"]
    assert row["status"] == "failed" and row["error_stage"] == "recipe" and "image_front" in row["error"]
    assert json.loads(row["metadata"]) == {"recipe": "review", "product": "LMP-404", "variant": "hero", "title": "desk lamp"}


def test_qc_failures_are_retried_recorded_and_kept_out_of_the_accepted_videos(recipe_run):
    _, out, results = recipe_run
    row = results["SNK-001-still"]
    assert row["status"] == "failed" and row["error_stage"] == "qc" and row["attempts"] == 2
    qc = json.loads(row["qc"])
    assert len({a["seed"] for a in qc["attempts"]}) == 2 and qc["config"]["min_motion"] == 250.0
    assert (out / "rejected" / "SNK-001-still.mp4").exists() and not (out / "SNK-001-still.mp4").exists()
    assert json.loads(results["SNK-001-hero"]["qc"])["passed"] is True


def test_the_report_sits_next_to_the_summary_and_every_link_resolves(recipe_run):
    _, out, _ = recipe_run
    report = out / "_runs" / "r1" / "report.html"
    summary = json.loads((out / "_runs" / "r1" / "summary.json").read_text())
    assert Path(summary["report_uri"]) == report
    parser = Links()
    parser.feed(report.read_text())
    assert parser.refs, "the report links nothing"
    assert all(not ref.startswith(("/", "file:", "http")) for ref in parser.refs)  # relative: the folder can move
    missing = [ref for ref in parser.refs if not (report.parent / ref).resolve().is_file()]
    assert missing == []
    assert {Path(r).name for r in parser.refs} >= {"SNK-001-hero.mp4", "SNK-001-hero.webp", "SNK-001-hero.jpg",
                                                   "SNK-001-still.mp4", "LMP-404-still.json"}
    preview = Image.open(report.parent / next(r for r in parser.refs if r.endswith("SNK-001-hero.webp")))
    assert preview.n_frames > 1 and preview.is_animated


def test_the_report_highlights_the_failed_checks_and_shows_errors(recipe_run):
    _, out, _ = recipe_run
    html = (out / "_runs" / "r1" / "report.html").read_text()
    still = html[html.index('id="SNK-001-still"'):html.index("</table>", html.index('id="SNK-001-still"'))]
    assert '<tr class="fail"><td>motion</td>' in still
    assert '<tr class="fail">' not in html[html.index('id="SNK-001-hero"'):html.index("</table>", html.index('id="SNK-001-hero"'))]
    assert "recipe:" in html and "image_front" in html  # LMP-404-hero's error
    assert "SNK-001 &middot; trail running sneaker" in html and "LMP-404 &middot; desk lamp" in html
    assert "Other jobs" not in html  # every job, the failed recipe row too, sits under its product


def test_report_totals_count_videos_seconds_gpu_seconds_and_cost(recipe_run):
    _, out, results = recipe_run
    html, totals = build_report(OutputStore(str(out)), "r1", gpus_per_job=2, gpu_hour_usd=3.6)
    # every stage of every attempt of the three jobs that reached a worker; GPU time is their generate time
    worked = [dict(results[j]["timings"]) for j in ("SNK-001-hero", "SNK-001-still", "LMP-404-still")]
    generated = sum(t["generate"] for t in worked)
    # only SNK-001-hero is accepted: both "still" jobs fail QC twice, LMP-404-hero never starts
    assert (totals.jobs, totals.succeeded, totals.failed) == (4, 1, 3)
    assert totals.videos == 1 and totals.video_seconds == pytest.approx(17 / 24, abs=0.01)
    assert totals.attempts == 1 + 2 + 2 + 0
    assert totals.replica_seconds == pytest.approx(sum(sum(t.values()) for t in worked), abs=0.01)
    assert totals.gpu_seconds == pytest.approx(2 * generated, abs=0.02)
    assert totals.cost_usd == pytest.approx(2 * generated / 3600 * 3.6, abs=1e-3)
    assert f"${totals.cost_usd:.2f}" in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get update && apt-get install -y chromium")
def test_the_report_renders_in_headless_chromium_with_its_images(recipe_run, tmp_path):
    _, out, _ = recipe_run
    # A copy elsewhere proves the relative links: the folder is moved, the page still works.
    moved = tmp_path / "copied-out"
    shutil.copytree(out, moved)
    page = (moved / "_runs" / "r1" / "report.html").as_uri()
    shot = tmp_path / "report.png"
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400"]
    proc = subprocess.run(flags + [f"--screenshot={shot}", page], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True, timeout=180).stdout
    assert "Run r1" in dom and dom.count('class="card') == 4
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1400)
    pixels = list(img.getdata())
    # the failed card's red frame is drawn...
    assert sum(1 for p in pixels if p == (198, 40, 40)) > 100
    # ...and the tiny model's noise thumbnails and previews were decoded: thousands of colours a text page lacks
    assert len(set(pixels)) > 5000
    print(f"screenshot: {shot}")
