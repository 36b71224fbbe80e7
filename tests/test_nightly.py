"""``ltx-ray nightly`` end to end on the shared local Ray: nights that repeat, grow and fail."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ltx_ray.batch.nightly import discover_manifests
from ltx_ray.cli import main as cli_main
from ltx_ray.storage.manifest import write_manifest

SMALL = {"width": 128, "height": 96, "num_frames": 9}


def night(manifests, out, date) -> tuple[int, dict]:
    code = cli_main(["nightly", "--manifests", str(manifests), "--out", str(out), "--date", date])
    return code, json.loads((out / "_nightly" / date / "summary.json").read_text())


def results(out) -> dict[str, dict]:
    return {r["job_id"]: r for r in pq.read_table(out / "results").to_pylist()}


def mtimes(out) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}


@pytest.fixture(scope="module")
def nights(ray_local, tmp_path_factory):
    """Four nights over one bucket of manifests; each step's state is recorded for the tests."""
    tmp = tmp_path_factory.mktemp("nightly")
    bucket, out = tmp / "manifests", tmp / "out"
    bucket.mkdir()
    write_manifest([{"job_id": "shoe", "prompt": "a red shoe", **SMALL}], str(bucket / "a.parquet"))
    write_manifest([{"job_id": "watch", "prompt": "a watch", **SMALL}], str(bucket / "b.parquet"))
    steps = {}
    steps["night1"] = (*night(bucket, out, "2026-11-24"), results(out), mtimes(out))
    steps["night1-again"] = (*night(bucket, out, "2026-11-24"), results(out), mtimes(out))
    write_manifest([{"job_id": "bag", "prompt": "a bag", **SMALL}], str(bucket / "c.parquet"))
    # b.parquet changes after it completed: one more row. It counts as new; its old row is not redone.
    write_manifest(
        [{"job_id": "watch", "prompt": "a watch", **SMALL}, {"job_id": "watch-2", "prompt": "a gold watch", **SMALL}],
        str(bucket / "b.parquet"),
    )
    steps["night2"] = (*night(bucket, out, "2026-11-25"), results(out), mtimes(out))
    write_manifest(
        [
            {"job_id": "hat", "prompt": "a hat", **SMALL},
            {"job_id": "broken", "prompt": "p", "image_uri": str(tmp / "missing.png"), **SMALL},
            {"job_id": "odd-width", "prompt": "p", **SMALL, "width": 250},
        ],
        str(bucket / "d.parquet"),
    )
    steps["night3"] = (*night(bucket, out, "2026-11-26"), results(out), mtimes(out))
    steps["night4"] = (*night(bucket, out, "2026-11-27"), results(out), mtimes(out))
    return out, steps


def test_the_first_night_runs_both_manifests_and_writes_its_summary_and_report(nights):
    out, steps = nights
    code, summary, rows, _ = steps["night1"]
    assert code == 0
    assert (summary["manifests_seen"], summary["manifests_run"], summary["manifests_skipped"]) == (2, 2, 0)
    assert summary["rows"] == {"succeeded": 2, "failed": 0, "invalid": 0, "skipped": 0}
    assert summary["video_seconds"] == pytest.approx(2 * 9 / 24, abs=0.01)
    assert summary["replica_seconds"] > 0 and summary["gpu_seconds"] == 0  # --device cpu: no GPUs held
    assert {r["status"] for r in rows.values()} == {"succeeded"} and set(rows) == {"shoe", "watch"}
    assert {r["run_id"] for r in rows.values()} == {"nightly-2026-11-24"}
    report = (out / "_nightly" / "2026-11-24" / "report.html").read_text()
    assert "2026-11-24" in report and "a.parquet" in report and "b.parquet" in report and "OK" in report
    assert 'href="../../_runs/nightly-2026-11-24/report.html"' in report


def test_running_the_same_night_again_regenerates_nothing(nights):
    out, steps = nights
    code, summary, rows, files = steps["night1-again"]
    assert code == 0
    assert (summary["manifests_seen"], summary["manifests_run"], summary["manifests_skipped"]) == (2, 0, 2)
    assert summary["rows"]["succeeded"] == 0 and summary["video_seconds"] == 0
    assert files == steps["night1"][3]  # same mp4s, untouched
    assert rows == steps["night1"][2]
    # The first invocation's record of the night is kept beside the new one.
    (kept,) = (out / "_nightly" / "2026-11-24" / "previous").glob("*/summary.json")
    assert json.loads(kept.read_text())["manifests_run"] == 2


def test_the_next_night_runs_only_the_new_and_the_changed_manifest_and_only_their_new_rows(nights):
    _, steps = nights
    code, summary, rows, files = steps["night2"]
    assert code == 0
    assert (summary["manifests_seen"], summary["manifests_run"], summary["manifests_skipped"]) == (3, 2, 1)
    ran = {m["uri"].rsplit("/", 1)[1] for m in summary["manifests"] if m["action"] == "run"}
    assert ran == {"b.parquet", "c.parquet"}
    assert summary["rows"] == {"succeeded": 2, "failed": 0, "invalid": 0, "skipped": 1}  # watch was done
    assert rows["bag"]["run_id"] == rows["watch-2"]["run_id"] == "nightly-2026-11-25"
    assert rows["shoe"]["run_id"] == rows["watch"]["run_id"] == "nightly-2026-11-24"
    assert {k: v for k, v in files.items() if k not in ("bag.mp4", "watch-2.mp4")} == steps["night1"][3]


def test_a_night_with_a_bad_row_exits_non_zero_and_finishes_the_other_rows(nights):
    out, steps = nights
    code, summary, rows, _ = steps["night3"]
    assert code == 1
    assert summary["rows"] == {"succeeded": 1, "failed": 1, "invalid": 1, "skipped": 0}
    assert rows["hat"]["status"] == "succeeded" and (out / "hat.mp4").exists()
    assert rows["odd-width"]["error_stage"] == "validate" and "width" in rows["odd-width"]["error"]
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error_stage"] == "fetch_inputs"
    assert "missing.png" in rows["broken"]["error"]
    d = next(m for m in summary["manifests"] if m["uri"].endswith("d.parquet"))
    assert (d["action"], d["completed"]) == ("run", False)
    assert "missing.png" in (out / "_nightly" / "2026-11-26" / "report.html").read_text()


def test_a_failed_manifest_is_picked_up_again_the_next_night_without_redoing_its_good_rows(nights):
    _, steps = nights
    code, summary, rows, files = steps["night4"]
    assert code == 1  # the bad row is still bad
    assert (summary["manifests_run"], summary["manifests_skipped"]) == (1, 3)
    assert summary["rows"] == {"succeeded": 0, "failed": 1, "invalid": 1, "skipped": 1}
    assert files["hat.mp4"] == steps["night3"][3]["hat.mp4"]
    assert rows["broken"]["run_id"] == "nightly-2026-11-27"


def test_discovery_takes_parquet_under_a_folder_or_key_prefix_and_ignores_underscored_paths(tmp_path):
    for name in ["2026-11-24-a.parquet", "2026-11-25-b.parquet", "notes.txt", "_nightly/x.parquet", "sub/c.parquet", ".d.parquet"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    names = [p.rsplit("/", 1)[1] for p in discover_manifests(str(tmp_path))]
    assert names == ["2026-11-24-a.parquet", "2026-11-25-b.parquet", "c.parquet"]
    assert [p.rsplit("/", 1)[1] for p in discover_manifests(str(tmp_path / "2026-11-25"))] == ["2026-11-25-b.parquet"]
    assert discover_manifests(str(tmp_path / "nothing-here")) == []


def test_an_unreadable_manifest_fails_the_night_without_stopping_it(tmp_path, capsys):
    bucket, out = tmp_path / "m", tmp_path / "out"
    bucket.mkdir()
    (bucket / "half-uploaded.parquet").write_bytes(b"PAR1 not really")
    code, summary = night(bucket, out, "2026-11-24")
    assert code == 1
    assert (summary["manifests_seen"], summary["manifests_run"], summary["manifests_unreadable"]) == (1, 0, 1)
    (bad,) = summary["manifests"]
    assert bad["action"] == "unreadable" and "half-uploaded.parquet" in bad["error"] and "Parquet" in bad["error"]
    assert "half-uploaded.parquet" in (out / "_nightly" / "2026-11-24" / "report.html").read_text()


def test_a_malformed_date_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["nightly", "--manifests", str(tmp_path), "--out", str(tmp_path / "o"), "--date", "25/11/2026"])
    assert exc.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err
