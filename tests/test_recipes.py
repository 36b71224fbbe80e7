"""Recipes: every shipped YAML loads, errors come all at once by key path, products expand to stable jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ltx_ray.cli import main as cli_main
from ltx_ray.errors import RecipeError
from ltx_ray.products.recipes import expand, expand_manifests, load_recipe
from ltx_ray.schema.profiles import ModelProfile
from ltx_ray.storage.manifest import read_manifest_rows, validate_rows, write_manifest
from tests.conftest import REPO

PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
PRODUCTS = str(REPO / "manifests" / "products.parquet")


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_recipe_in_pipelines_loads_and_opens_with_how_to_run_it(path):
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem
    head = path.read_text().splitlines()[:8]
    assert head[0].startswith("#") and any("ltx-ray run --recipe pipelines/" + path.name in line for line in head)


def test_the_shipped_recipes_include_the_four_the_docs_name():
    assert {p.name for p in PIPELINES} >= {"product-360.yaml", "product-showcase.yaml", "prompt-batch.yaml", "demo-cpu.yaml"}


def test_a_bad_recipe_reports_every_problem_at_once_by_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
name: bad
key: sku
defaults: {width: wide, colour: red}
variants:
  - name: turn
    prompt: "A {title.upper} turning"
    keyframes:
      - {image: "{image_front}", at: 1.5}
      - {image: "{image_back}"}
""")
    with pytest.raises(RecipeError) as err:
        load_recipe(str(bad))
    text = str(err.value)
    for where in ("defaults.width", "defaults.colour", "variants.0.prompt", "variants.0.keyframes.0.at", "variants.0.keyframes.1"):
        assert f"  {where}" in text, text
    assert "5 problem(s)" in text


def test_settings_go_through_the_manifest_checks_and_keyframes_must_not_share_a_frame(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
name: bad
key: sku
defaults: {width: 250, num_frames: 17}
variants:
  - name: turn
    prompt: "A {title}"
    keyframes: [{image: "{a}", at: 0}, {image: "{b}", at: 0.5}, {image: "{c}", at: 0.52}]
""")
    with pytest.raises(RecipeError) as err:
        load_recipe(str(bad))
    assert "defaults.width: must be a multiple of 32; use 256" in str(err.value)
    assert "variants.0.keyframes: land on frames [0, 8, 8]" in str(err.value)


def test_product_360_makes_one_keyframed_turn_per_product_with_stable_ids():
    recipe = load_recipe(str(REPO / "pipelines" / "product-360.yaml"))
    first, again = expand_manifests(recipe, [PRODUCTS]), expand_manifests(recipe, [PRODUCTS])
    assert first.problems == [] and first.rows == again.rows
    assert [r["job_id"] for r in first.rows] == ["SNK-001-turn", "BTL-002-turn", "MUG-003-turn"]
    row = first.rows[0]
    assert row["task"] == "keyframes" and row["prompt"].startswith("A red trail running sneaker")
    assert "studio ambience" in row["prompt"]
    # four photos around the 121-frame turn, at 0, 0.33, 0.66 and 1 of it
    assert [k["frame"] for k in row["keyframes"]] == [0, 40, 79, 120]
    assert [Path(k["uri"]).name for k in row["keyframes"]] == [
        "SNK-001-front.png", "SNK-001-side.png", "SNK-001-back.png", "SNK-001-front.png"]
    assert all(Path(k["uri"]).is_absolute() and Path(k["uri"]).exists() for k in row["keyframes"])
    assert json.loads(row["qc"])["max_attempts"] == 3
    assert json.loads(row["metadata"]) == {"recipe": "product-360", "product": "SNK-001", "variant": "turn",
                                           "title": "trail running sneaker", "category": "footwear"}
    assert validate_rows([("x", first.rows)], ModelProfile()).problems == []


def test_product_showcase_makes_a_vertical_and_a_landscape_i2v_per_product():
    recipe = load_recipe(str(REPO / "pipelines" / "product-showcase.yaml"))
    rows = expand_manifests(recipe, [PRODUCTS]).rows
    assert [r["job_id"] for r in rows[:2]] == ["SNK-001-9x16", "SNK-001-16x9"] and len(rows) == 6
    assert [(r["width"], r["height"]) for r in rows[:2]] == [(576, 1024), (1024, 576)]
    assert all(r["task"] == "i2v" and r["image_uri"].endswith("-front.png") for r in rows)
    jobs = validate_rows([("x", rows)], ModelProfile()).jobs
    assert [j.num_frames for j in jobs[:1]] == [97]  # 4 s at 24 fps


def test_prompt_batch_keeps_manifest_rows_and_fills_only_their_empty_cells():
    recipe = load_recipe(str(REPO / "pipelines" / "prompt-batch.yaml"))
    demo = str(REPO / "manifests" / "demo.parquet")
    original = {r["job_id"]: r for r in read_manifest_rows(demo)}
    rows = {r["job_id"]: r for r in expand_manifests(recipe, [demo]).rows}
    assert rows.keys() == original.keys()
    assert rows["t2v-sneaker"]["seconds"] == 5.0 and rows["t2v-sneaker"]["prompt"] == original["t2v-sneaker"]["prompt"]
    # a row giving num_frames keeps it, and does not get the default seconds as well
    assert rows["t2v-coffee-9x16"]["num_frames"] == 49 and "seconds" not in rows["t2v-coffee-9x16"]
    assert Path(rows["i2v-bottle"]["image_uri"]).exists()  # relative paths still find the images
    assert json.loads(rows["t2v-silent"]["qc"])["max_attempts"] == 2
    assert validate_rows([("x", list(rows.values()))], ModelProfile()).problems == []


def test_a_missing_column_is_fatal_and_an_empty_cell_fails_only_its_product(tmp_path):
    recipe = load_recipe(str(REPO / "pipelines" / "product-showcase.yaml"))
    with pytest.raises(RecipeError, match="has no category, color, image_front"):
        expand(recipe, [("m.parquet", [{"sku": "A1", "title": "a lamp"}])])
    rows = read_manifest_rows(PRODUCTS)
    rows[1]["image_front"] = None
    out = expand(recipe, [("m.parquet", rows)])
    assert len(out.rows) == 4 and {p.job_id for p in out.problems} == {"BTL-002-9x16", "BTL-002-16x9"}
    assert out.problems[0].field == "image_front" and "fill the cell" in out.problems[0].message


def test_the_expand_command_writes_a_manifest_that_validates(tmp_path, capsys):
    out = tmp_path / "jobs.parquet"
    assert cli_main(["expand", "--recipe", str(REPO / "pipelines" / "product-360.yaml"), PRODUCTS, "--out", str(out)]) == 0
    assert pq.read_table(out).column("job_id").to_pylist() == ["SNK-001-turn", "BTL-002-turn", "MUG-003-turn"]
    assert cli_main(["validate", str(out)]) == 0
    rows = read_manifest_rows(PRODUCTS)
    rows[0]["color"] = None
    write_manifest(rows, str(tmp_path / "gap.parquet"))
    assert cli_main(["expand", "--recipe", str(REPO / "pipelines" / "product-360.yaml"), str(tmp_path / "gap.parquet"),
                     "--out", str(out)]) == 1
    assert "job 'SNK-001-turn': color = None" in capsys.readouterr().out
    (tmp_path / "broken.yaml").write_text("name: x\nvariants: [{name: a, prompt: p}]\n")
    assert cli_main(["expand", "--recipe", str(tmp_path / "broken.yaml"), PRODUCTS, "--out", str(out)]) == 2
    assert "key: recipes with variants need" in capsys.readouterr().err
