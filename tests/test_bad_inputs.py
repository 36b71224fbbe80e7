"""The bad-input corpus: every kind ends as a failed row naming the field and the fix, and the run goes on."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ltx_ray.batch.run import RunConfig, run
from ltx_ray.errors import ManifestError
from ltx_ray.schema.fields import JOB_ID_PATTERN, frames_for_seconds
from ltx_ray.schema.manifest import ManifestRow
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.storage.manifest import load_and_validate, validate_rows, write_manifest
from tests.bad_inputs import BASE, FETCH_CASES, VALIDATION_CASES, build_row, materialise

DEFAULTS = ModelProfile(steps=4)


def write_one_row_manifest(path, row):
    """Types as the row has them (a wrong type stays wrong), like a manifest made elsewhere."""
    pq.write_table(pa.Table.from_pylist([row]), path)
    return str(path)


def test_the_corpus_is_large_enough():
    kinds = {k for k, *_ in VALIDATION_CASES + FETCH_CASES}
    assert len(kinds) >= 30 + 6


@pytest.mark.parametrize("index", range(len(VALIDATION_CASES)), ids=[c[0] for c in VALIDATION_CASES])
def test_each_validation_case_names_the_field_and_the_fix(tmp_path, index):
    kind, overrides, field, fragment = VALIDATION_CASES[index]
    files = materialise(tmp_path)
    path = write_one_row_manifest(tmp_path / "m.parquet", build_row(index, overrides, files))
    result = load_and_validate([path], DEFAULTS)
    assert result.jobs == [], kind
    messages = [str(p) for p in result.problems]
    assert any(p.field == field and fragment in p.message for p in result.problems), (kind, messages)


def test_a_duplicate_job_id_fails_only_the_repeat(tmp_path):
    write_manifest([{"job_id": "a", **BASE}, {"job_id": "a", **BASE, "prompt": "other"}], str(tmp_path / "m.parquet"))
    result = load_and_validate([str(tmp_path / "m.parquet")], DEFAULTS)
    assert [j.prompt for j in result.jobs] == [BASE["prompt"]]
    assert "duplicate job_id" in result.problems[0].message and "row 0" in result.problems[0].message


@pytest.mark.parametrize("content, match", [(b"PAR1 not really", "not a readable Parquet"), (b"", "not a readable Parquet")])
def test_a_manifest_that_is_not_parquet_is_fatal(tmp_path, content, match):
    (tmp_path / "m.parquet").write_bytes(content)
    with pytest.raises(ManifestError, match=match):
        load_and_validate([str(tmp_path / "m.parquet")], DEFAULTS)


def test_the_whole_corpus_in_one_run_fails_each_bad_row_and_finishes_the_good_ones(ray_local, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "inputs").mkdir(parents=True)
    (work / "manifests").mkdir()
    monkeypatch.chdir(work)
    files = materialise(work / "inputs")
    cases = VALIDATION_CASES + FETCH_CASES
    manifests = [
        write_one_row_manifest(work / "manifests" / f"case-{i:02d}.parquet", build_row(i, overrides, files))
        for i, (_, overrides, _, _) in enumerate(cases)
    ]
    manifests.append(write_manifest([{"job_id": "good-1", **BASE}, {"job_id": "good-2", **BASE, "image_uri": files["img"]}],
                                    str(work / "manifests" / "good.parquet")))
    before = {p for p in work.rglob("*") if "out" not in p.parts}

    summary = run(RunConfig(manifests=manifests, out=str(work / "out")), log=lambda *_: None)

    assert summary.exit_code == 1
    assert (summary.succeeded, summary.failed + summary.invalid) == (2, len(cases))
    rows = pq.read_table(work / "out" / "results").to_pylist()
    assert len(rows) == len(cases) + 2
    by_job = {r["job_id"]: r for r in rows}
    assert by_job["good-1"]["status"] == by_job["good-2"]["status"] == "succeeded"
    for i, (kind, overrides, field, fragment) in enumerate(cases):
        job_id = overrides.get("job_id", f"bad-{i:02d}")
        row = by_job.get(job_id)
        assert row is not None and row["status"] == "failed", kind
        assert field in row["error"] and fragment in row["error"], (kind, row["error"])
        assert row["error_stage"] == ("fetch_inputs" if (kind, overrides, field, fragment) in FETCH_CASES else "validate")
    # Nothing is written outside --out (and nothing under a bad job_id's path).
    after = {p for p in work.rglob("*") if "out" not in p.parts}
    assert after == before
    assert not (tmp_path / "etc").exists()
    assert sorted(p.name for p in (work / "out").glob("*.mp4")) == ["good-1.mp4", "good-2.mp4"]


# ---- property tests of the schema ----

def accepted(**fields) -> bool:
    """Whether a row with these fields (plus a job_id and prompt) passes validation."""
    try:
        ManifestRow(job_id="a", prompt="p", **fields)
    except ValidationError:
        return False
    return True


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_a_width_is_valid_exactly_when_it_is_a_multiple_of_32_in_range(width):
    assert accepted(width=width) == (width % 32 == 0 and 32 <= width <= 4096)


@given(st.integers(min_value=-100, max_value=3000))
def test_a_frame_count_is_valid_exactly_when_it_is_8k_plus_1_in_range(frames):
    assert accepted(num_frames=frames) == ((frames - 1) % 8 == 0 and 9 <= frames <= 1441)


@given(st.floats(min_value=0.05, max_value=60), st.sampled_from([8.0, 12.0, 23.976, 24.0, 25.0, 30.0]))
def test_seconds_always_become_a_valid_frame_count_close_to_the_request(seconds, fps):
    frames = frames_for_seconds(seconds, fps)
    assert (frames - 1) % 8 == 0 and frames >= 9
    assert abs(frames / fps - seconds) <= max(4.5 / fps, 9 / fps)


@given(st.text(max_size=140))
def test_an_accepted_job_id_is_always_a_safe_file_name(job_id):
    import re

    try:
        ManifestRow(job_id=job_id, prompt="p")
    except ValidationError:
        return
    assert re.fullmatch(JOB_ID_PATTERN[1:-1], job_id)
    assert "/" not in job_id and "\\" not in job_id and job_id not in (".", "..") and not job_id.startswith(".")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(
    st.sampled_from(list(ManifestRow.model_fields) + ["x_extra", "bogus"]),
    st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans(),
              st.lists(st.dictionaries(st.sampled_from(["uri", "frame", "strength"]), st.one_of(st.integers(-5, 50), st.text(max_size=5))), max_size=3)),
))
def test_validation_never_crashes_and_every_problem_names_a_field(row):
    result = validate_rows([("fuzz.parquet", [row])], DEFAULTS)
    assert len(result.jobs) + len(result.invalid) == 1
    for problem in result.problems:
        assert problem.field and problem.message
