"""cluster/ and pipelines/: every YAML parses, every KubeRay resource passes its CRD schema as
``kubectl apply --validate=strict`` would, the launcher config passes Ray's schema, and every
``ltx-ray`` command line in them parses with the real CLI (a renamed flag breaks this test,
not a 3 a.m. run)."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO

CLUSTER = REPO / "cluster"
YAML_FILES = sorted([*CLUSTER.glob("*.yaml"), *(REPO / "pipelines").glob("**/*.yaml"), *(REPO / "pipelines").glob("**/*.yml")])
KUBERAY_KINDS = {"RayCluster", "RayJob", "RayCronJob", "RayService"}


def crd_dir() -> Path:
    """../shared/kuberay-crds next to the repository (CI), else /work/shared (a worktree)."""
    for candidate in (REPO.parent / "shared" / "kuberay-crds", Path("/work/shared/kuberay-crds")):
        if candidate.is_dir():
            return candidate
    pytest.fail("KubeRay CRDs not found in ../shared/kuberay-crds or /work/shared/kuberay-crds")


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected, as the API server's strict field validation does.

    An object with ``properties`` and no ``additionalProperties`` takes no other field; a
    subtree marked ``x-kubernetes-preserve-unknown-fields`` keeps anything; OpenAPI's
    ``nullable`` becomes a JSON-schema null type.
    """
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        is_object = node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"])
        if is_object and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
            if node.get("x-kubernetes-embedded-resource"):
                node.setdefault("properties", {}).update({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
            node["additionalProperties"] = False
        for key, value in node.items():
            if key in ("properties", "patternProperties"):
                for sub in value.values():
                    walk(sub)
            elif key in ("items", "additionalProperties", "not") or key in ("anyOf", "allOf", "oneOf"):
                walk(value)

    walk(schema)
    # Top-level metadata is ObjectMeta, checked by the API server rather than the CRD: allow
    # the fields these files use, and nothing misspelled.
    schema["properties"]["metadata"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    return schema


def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator of that kind's served version."""
    out = {}
    for path in crd_dir().glob("*.yaml"):
        # libyaml's loader: the CRDs are megabytes, which the pure-Python one takes ~20 s over.
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    return out


@pytest.fixture(scope="module")
def validators():
    return crd_validators()


def docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kuberay_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in YAML_FILES for d in docs(p) if isinstance(d, dict) and d.get("kind") in KUBERAY_KINDS]


def errors(validators, doc) -> list[str]:
    validator = validators.get((doc["apiVersion"], doc["kind"]))
    assert validator is not None, f"no served CRD version for {doc['apiVersion']} {doc['kind']}"
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_every_yaml_under_cluster_and_pipelines_parses_and_opens_with_a_comment():
    assert {p.name for p in YAML_FILES} >= {
        "raycluster.yaml", "rayjob-batch.yaml", "raycronjob-nightly.yaml", "cronjob-nightly.yaml", "rayservice.yaml", "aws.yaml",
    }
    for path in [*YAML_FILES, CLUSTER / "Dockerfile"]:
        if path.suffix in (".yaml", ".yml"):
            assert docs(path), f"{path} is empty"
        assert path.read_text().startswith("#"), f"{path.name} must open with a comment saying what it is for and how to apply it"


@pytest.mark.parametrize("name,doc", kuberay_docs(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_every_kuberay_resource_validates_strictly_against_its_crd(validators, name, doc):
    assert errors(validators, doc) == [], name


def test_the_four_kuberay_kinds_are_all_covered():
    assert {d["kind"] for _, d in kuberay_docs()} == KUBERAY_KINDS


@pytest.mark.parametrize(
    "path,misspelled",
    [
        (("spec", "workerGroupSpecs", 0), "minReplica"),  # minReplicas
        (("spec", "headGroupSpec", "template", "spec", "containers", 0), "imagePullPolicyy"),
        (("spec",), "enableInTreeAutoscalling"),
    ],
)
def test_a_misspelled_field_fails_validation(validators, path, misspelled):
    doc = docs(CLUSTER / "raycluster.yaml")[0]
    node = doc
    for key in path:
        node = node[key]
    node[misspelled] = "x"
    found = errors(validators, doc)
    assert any(misspelled in e and "Additional properties are not allowed" in e for e in found), found


def test_a_wrong_type_fails_validation(validators):
    doc = docs(CLUSTER / "rayjob-batch.yaml")[0]
    doc["spec"]["backoffLimit"] = "two"
    assert any("backoffLimit" in e for e in errors(validators, doc))


def test_preserve_unknown_fields_subtrees_keep_unknown_keys():
    schema = strict({
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
            }},
        },
    })
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"spec": {"free": {"anything": 1}, "closed": {"a": "x"}}})
    assert not validator.is_valid({"spec": {"closed": {"b": "x"}}})


def test_kuberay_entrypoints_join_their_cluster_instead_of_starting_a_local_ray():
    from ltx_ray.cli import build_parser

    parser, _ = build_parser()
    entrypoints = [d["spec"].get("entrypoint") or d["spec"]["jobTemplate"]["entrypoint"] for _, d in kuberay_docs() if d["kind"] in ("RayJob", "RayCronJob")]
    assert len(entrypoints) == 2
    for entrypoint in entrypoints:
        assert parser.parse_args(shlex.split(entrypoint)[1:]).address == "auto", entrypoint


def test_the_raycronjob_says_it_is_alpha_behind_the_feature_gate():
    text = (CLUSTER / "raycronjob-nightly.yaml").read_text()
    assert "ALPHA" in text and "RayCronJob" in text and "feature gate" in text


def test_the_plain_cronjob_never_runs_two_nights_at_once_and_waits_for_the_run():
    doc = docs(CLUSTER / "cronjob-nightly.yaml")[0]
    assert (doc["apiVersion"], doc["kind"]) == ("batch/v1", "CronJob")
    assert doc["spec"]["concurrencyPolicy"] == "Forbid"
    pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "ltx-ray submit" in pod["containers"][0]["args"][0] and "--wait" in pod["containers"][0]["args"][0]


def test_the_rayservice_serve_config_passes_rays_serve_schema():
    from ray.serve.schema import ServeDeploySchema

    doc = docs(CLUSTER / "rayservice.yaml")[0]
    config = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"])) if hasattr(
        ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "ltx_ray.serve.app:build_app"
    from ltx_ray.serve.config import ServeArgs

    args = ServeArgs.model_validate(app.args)
    # Each generator replica gets the GPU its cuda device needs, and Serve may ask for no more
    # replicas than the GPU worker group can hold.
    assert args.device == "cuda" and args.gpus_per_replica == 1
    gpu_group = next(g for g in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert args.replicas.max * args.gpus_per_replica <= gpu_group["maxReplicas"]
    assert args.ingress_replicas >= 2


def test_the_launcher_config_validates_against_rays_schema_and_has_a_gpu_worker_type():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = docs(CLUSTER / "aws.yaml")[0]
    jsonschema.validate(config, schema)
    gpu_types = [name for name, t in config["available_node_types"].items() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types and config["head_node_type"] not in gpu_types
    broken = copy.deepcopy(config)
    broken["idle_timeout_minute"] = 5  # misspelled: Ray's schema takes no unknown top-level key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# --- ltx-ray command lines --------------------------------------------------------------

COMMAND = re.compile(r"(?:^|(?<=[\s;&|(]))ltx-ray\s[^;&|\n]*")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        if node and node[0] == "ltx-ray" and all(isinstance(v, str) for v in node):
            yield shlex.join(node)  # exec form: ["ltx-ray", "run", ...]
        else:
            for value in node:
                yield from _strings(value)


def _dockerfile_instructions(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword in ("RUN", "CMD", "ENTRYPOINT"):
            rest = rest.strip()
            out.append(shlex.join(json.loads(rest)) if rest.startswith("[") else rest)
    return out


def _comment_commands(text: str) -> list[str]:
    """How-to-run lines in comments (``#   ltx-ray run ... \\`` continued on the next lines,
    optionally after a label such as ``Run:``): a stale one misleads as much as a broken value."""
    lines = [line.strip()[1:].strip() for line in text.splitlines() if line.strip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [m.group(1) for m in re.finditer(r"^(?:[A-Z][\w ]*:\s+)?(ltx-ray\s.*)$", joined, re.M)]


def command_lines() -> list[tuple[str, list[str]]]:
    """Every ``ltx-ray ...`` in the YAML values, the Dockerfile instructions and how-to-run comments, as argv."""
    sources = [(p.name, s) for p in YAML_FILES for d in docs(p) for s in _strings(d)]
    sources += [("Dockerfile", s) for s in _dockerfile_instructions((CLUSTER / "Dockerfile").read_text())]
    sources += [(p.name, s) for p in [*YAML_FILES, CLUSTER / "Dockerfile"] for s in _comment_commands(p.read_text())]
    found = []
    for name, text in sources:
        # Shell expansions stand for one word the shell fills in at run time.
        text = re.sub(r"\$\([^)]*\)|\$\{\w+\}|\$\w+", "SHELLVALUE", text.replace("\n", " "))
        for match in COMMAND.finditer(text):
            argv = shlex.split(match.group(0))
            found.append((name, argv[1:]))
    return found


def test_the_command_lines_cover_run_nightly_and_submit():
    assert {argv[0] for _, argv in command_lines()} >= {"run", "nightly", "submit", "validate"}


@pytest.mark.parametrize("name,argv", command_lines(), ids=lambda v: v if isinstance(v, str) else " ".join(v[:2]))
def test_every_ltx_ray_command_line_parses_with_the_real_cli(name, argv):
    from ltx_ray.cli import build_parser
    from ltx_ray.commands.run import run_config_from_args

    parser, _ = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0 and argv in (["--help"], ["-h"]):
            return  # `ltx-ray --help` (the image's default command) prints usage and exits 0
        pytest.fail(f"{name}: `ltx-ray {' '.join(argv)}` does not parse (see the usage message above)")
    if args.command in ("run", "submit", "nightly"):
        # The pydantic RunConfig checks what argparse cannot (replicas >= 1, dtype, offload).
        manifests = args.manifests if isinstance(args.manifests, list) else [args.manifests]
        run_config_from_args(args, manifests)


def _gpu_pods(node):
    """Every pod spec under ``node`` whose container asks for a GPU."""
    if isinstance(node, dict):
        containers = node.get("containers")
        if isinstance(containers, list) and any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                                                for c in containers):
            yield node
        for value in node.values():
            yield from _gpu_pods(value)
    elif isinstance(node, list):
        for value in node:
            yield from _gpu_pods(value)


def _gib(quantity: str) -> float:
    return float(quantity.removesuffix("Gi"))


def test_gpu_pods_have_the_host_memory_a_replica_needs_and_a_bounded_shm():
    """What the comment beside each GPU pod adds up (a text encoder resting on the host on an
    80 GB card, torch/CUDA, a 4K x 241 clip's frames at 1.5x, Ray's /dev/shm) must fit its limit,
    and /dev/shm, which counts against it, must be bounded."""
    pods = [pod for path in sorted((REPO / "cluster").glob("*.yaml")) for doc in docs(path) for pod in _gpu_pods(doc)]
    assert len(pods) == 4
    for pod in pods:
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]  # Guaranteed QoS: not evicted first
        shm = next(v["emptyDir"] for v in pod["volumes"] if v["name"] == "dshm")
        need = 22.7 + 6 + 3840 * 2160 * 3 * 241 * 1.5 / 2**30 + _gib(shm["sizeLimit"])
        assert _gib(resources["limits"]["memory"]) >= need


# --- metrics: the PodMonitor and the dashboard --------------------------------------------

LTX_METRIC = re.compile(r'(?:Counter|Histogram|Gauge)\(\s*"(ltx_ray_\w+)"')
# Ray's own series the dashboard reads, seen on a local Ray 2.60 scrape during a Ray Data run.
RAY_METRICS = {"ray_resources", "ray_data_num_alive_actors", "ray_data_num_pending_actors"}


def exported_ltx_metrics() -> set[str]:
    """The Prometheus names of the metrics ltx-ray defines (Ray adds ray_, and _total to a counter)."""
    names = set()
    for path in (REPO / "ltx_ray").rglob("metrics.py"):
        names |= {"ray_" + name for name in LTX_METRIC.findall(path.read_text())}
    return names


def test_the_dashboard_reads_only_series_that_ltx_ray_or_ray_export_and_has_the_night_panels():
    dashboard = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exported = exported_ltx_metrics()
    assert {"ray_ltx_ray_jobs", "ray_ltx_ray_generation_seconds", "ray_ltx_ray_gpu_seconds",
            "ray_ltx_ray_serve_queue_depth", "ray_ltx_ray_serve_lease_expiries"} <= exported
    for expr in exprs:
        for series in re.findall(r"\bray_\w+", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", series)
            assert base in exported or series in RAY_METRICS, f"{series} in {expr!r} is exported by nobody"
    text = "\n".join(exprs)
    for wanted in ('sum by (status)', 'sum by (error_stage)', 'histogram_quantile(0.95', 'ray_ltx_ray_gpu_seconds_total',
                   'ray_ltx_ray_serve_queue_depth', 'ray_ltx_ray_serve_lease_expiries_total', 'ray_data_num_alive_actors'):
        assert wanted in text, f"no panel uses {wanted}"


def test_the_podmonitor_scrapes_every_ray_pods_metrics_port():
    (doc,) = docs(CLUSTER / "podmonitor.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert doc["spec"]["selector"]["matchExpressions"] == [{"key": "ray.io/cluster", "operator": "Exists"}]
    (endpoint,) = doc["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")  # KubeRay's named port 8080
