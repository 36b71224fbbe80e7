"""The generation pool: ``--replicas N`` is a fixed pool, ``--replicas MIN:MAX`` one that grows onto nodes that join."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from ltx_ray.batch.pool import Replicas, actor_pool
from ltx_ray.batch.run import RunConfig
from tests.conftest import REPO


@pytest.mark.parametrize("value,expected", [(2, (2, 2)), ("4", (4, 4)), ("1:8", (1, 8)), (" 2 : 2 ", (2, 2))])
def test_replicas_are_a_number_or_a_min_max_range(value, expected):
    replicas = RunConfig(manifests=["m.parquet"], out="out", replicas=value).replicas
    assert (replicas.min, replicas.max) == expected
    assert replicas.fixed == (expected[0] == expected[1])


@pytest.mark.parametrize("value,message", [
    ("3:1", "MIN is more than MAX; give the smaller number first (1:3)"),
    ("0:2", "at least one replica to make progress; give MIN >= 1 (e.g. 1:2)"),
    (0, "at least one replica"),
    ("two", "is not N or MIN:MAX"),
    ("1:", "is not N or MIN:MAX"),
])
def test_a_bad_replica_range_is_refused_naming_the_fix(value, message):
    with pytest.raises(ValidationError, match="replicas") as info:
        RunConfig(manifests=["m.parquet"], out="out", replicas=value)
    assert message in str(info.value)


def test_the_command_line_takes_a_range_and_submit_forwards_it_as_given(capsys):
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args
    from ltx_ray.commands.submit import run_argv

    parser, _ = build_parser()
    args = parser.parse_args(["run", "m.parquet", "--out", "o", "--replicas", "1:3"])
    assert run_config_from_args(args, args.manifests).replicas == Replicas(min=1, max=3)
    args = parser.parse_args(["submit", "m.parquet", "--out", "o", "--address", "http://h:8265", "--replicas", "2:6"])
    assert run_argv(args, args.manifests)[-2:] == ["--replicas", "2:6"]
    # A fixed pool stays the plain number it always was (same argv, same submission id); the default is not sent.
    args = parser.parse_args(["submit", "m.parquet", "--out", "o", "--address", "http://h:8265", "--replicas", "1"])
    assert "--replicas" not in run_argv(args, args.manifests)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "m.parquet", "--out", "o", "--replicas", "3:1"])
    assert "argument --replicas: '3:1': MIN is more than MAX" in capsys.readouterr().err


def test_a_dumped_run_config_validates_again_with_its_range():
    config = RunConfig(manifests=["m.parquet"], out="out", replicas="1:3")
    assert config.model_dump()["replicas"] == "1:3"
    assert RunConfig.model_validate_json(config.model_dump_json()).replicas == config.replicas
    assert RunConfig(manifests=["m.parquet"], out="out", replicas=4).model_dump()["replicas"] == 4


def test_a_range_makes_an_autoscaling_ray_data_pool_and_a_number_a_fixed_one():
    grows = actor_pool(Replicas.model_validate("1:3"), tasks_in_flight=1)
    assert (grows.min_size, grows.max_size) == (1, 3)
    fixed = actor_pool(Replicas.model_validate(4), tasks_in_flight=2)
    assert (fixed.min_size, fixed.max_size, fixed.max_tasks_in_flight_per_actor) == (4, 4, 2)


@pytest.mark.e2e  # its own Ray cluster, in a subprocess
def test_an_autoscaling_pool_grows_onto_a_node_that_joins_mid_run(tmp_path, tiny_model):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tests.pool_growth", str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    added = proc.stdout.split("ADDED ", 1)[1].splitlines()[0].strip()
    head = proc.stdout.split("HEAD ", 1)[1].splitlines()[0].strip()
    assert added, "the run ended before its first job: no node was added"
    assert "generating on 1 to 3 replicas (autoscaling" in proc.stdout
    assert (summary["succeeded"], summary["failed"]) == (8, 0)
    rows = pq.read_table(out / "results").to_pylist()
    by_node = Counter(r["node_id"] for r in rows)
    # The run started on the head's one replica (the node joined after its first job), and
    # replicas the pool added on the new node ran jobs too.
    assert set(by_node) == {head, added}, by_node
    assert len({r["worker"] for r in rows if r["node_id"] == added}) >= 1
    assert len({r["worker"] for r in rows}) >= 2


# -- pools routed by size (--pool) ---------------------------------------------------------------

POOLS = ["small:replicas=4,gpus=1", "big:replicas=1,gpus=4,parallel=ulysses,min_pixels=1920x1088x121"]


def test_a_row_goes_to_the_pool_with_the_largest_min_pixels_at_or_under_its_size():
    from ltx_ray.batch.pool import route

    pools = RunConfig(manifests=["m.parquet"], out="out", device="cuda", pool=POOLS).pool_list()
    assert [(p.name, p.gpus, p.layout.ranks) for p in pools] == [("small", 1, 1), ("big", 4, 4)]
    assert route(pools, 768, 512, 121).name == "small"
    assert route(pools, 1920, 1088, 121).name == "big"  # at the threshold
    assert route(pools, 3840, 2176, 121).name == "big"
    assert route(pools, 1920, 1088, 113).name == "small"  # fewer frames: under it


@pytest.mark.parametrize("pools,message", [
    (["a:replicas=2", "a:min_pixels=100"], "pool names repeat"),
    (["a:min_pixels=100"], "no pool takes rows under 100 pixels: leave min_pixels off one pool"),
    (["a", "b"], "two pools share min_pixels"),
    (["a:gpu=2"], "'gpu=2' in pool 'a:gpu=2': give key=value with a key among cpus, gpus, min_pixels, parallel, replicas"),
    (["a:parallel=ring"], "parallel=ring runs one rank per GPU; give gpus=N (N >= 2)"),
    (["a:gpus=3,parallel=cfg-ulysses"], "use an even rank count, not 3"),
])
def test_pools_that_leave_a_row_without_a_pool_or_cannot_start_are_refused_naming_the_fix(pools, message):
    with pytest.raises(ValidationError) as info:
        RunConfig(manifests=["m.parquet"], out="out", pool=pools)
    assert message in str(info.value)


def test_pools_replace_the_single_pool_flags_and_travel_through_submit():
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args
    from ltx_ray.commands.submit import run_argv
    from ltx_ray.errors import RunFatal

    parser, _ = build_parser()
    args = parser.parse_args(["run", "m.parquet", "--out", "o", "--device", "cuda", "--pool", POOLS[0], "--pool", POOLS[1]])
    config = run_config_from_args(args, args.manifests)
    assert [str(p) for p in config.pool] == ["small:replicas=4,gpus=1", "big:replicas=1,gpus=4,parallel=ulysses,min_pixels=252764160"]
    assert RunConfig.model_validate(config.model_dump()).pool_list() == config.pool_list()  # a recipe / submit round trip
    args = parser.parse_args(["submit", "m.parquet", "--out", "o", "--address", "http://h:8265", "--pool", POOLS[0],
                              "--pool", POOLS[1]])
    assert run_argv(args, args.manifests)[-4:] == ["--pool", "small:replicas=4,gpus=1", "--pool",
                                                  "big:replicas=1,gpus=4,parallel=ulysses,min_pixels=252764160"]
    args = parser.parse_args(["run", "m.parquet", "--out", "o", "--pool", POOLS[0], "--replicas", "2"])
    with pytest.raises(RunFatal, match="--pool gives each pool its replicas, gpus and parallel: leave --replicas"):
        run_config_from_args(args, args.manifests)


def test_parallel_needs_a_whole_number_of_ranks_and_on_the_cpu_claims_no_gpu():
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args
    from ltx_ray.errors import RunFatal

    parser, _ = build_parser()
    args = parser.parse_args(["run", "m.parquet", "--out", "o", "--parallel", "ulysses"])
    with pytest.raises(RunFatal, match="give --gpus-per-replica N, a whole N >= 2"):
        run_config_from_args(args, args.manifests)
    args = parser.parse_args(["run", "m.parquet", "--out", "o", "--device", "cpu", "--gpus-per-replica", "2",
                              "--parallel", "ulysses"])
    (pool,) = run_config_from_args(args, args.manifests).pool_list()
    assert (pool.layout.mode, pool.layout.ranks, pool.claimed_gpus("cpu"), pool.claimed_gpus("cuda")) == ("ulysses", 2, 0, 2)
