"""The Kubernetes manifests (deploy/k8s/) and the image (deploy/Dockerfile) against the code.

No cluster and no Docker daemon here: these check what the manifests say against what the
program does (the settings they set load, the probe and scrape paths are served, the
Ingress exposes exactly the public paths, selectors match), and that a wheel install, which
the image makes, holds every package.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from setuptools import find_packages  # type: ignore[import-untyped]  # no stubs installed

from config.settings import Settings, env_name, load_settings
from monitor.app import create_app
from web.routes import PUBLIC_PATHS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
POD_IP = "10.42.0.7"


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                yield path.name, doc


DOCS = list(_documents())


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in DOCS if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container() -> dict[str, Any]:
    containers = _one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def _mounts() -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in _container()["volumeMounts"]}


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The paths the worker's web server serves."""
    settings = load_settings(
        env_file=None,
        data_dir=tmp_path_factory.mktemp("routes"),
        kafka_broker="127.0.0.1:1",
        web_port=1,
    )
    ctx = create_app(settings, "127.0.0.1:1", store="memory://", embedded=False)
    web: Any = ctx.app.web  # faust's aiohttp driver
    return {r.resource.canonical for r in web.web_app.router.routes() if r.resource is not None}


def _is_public(route: str) -> bool:
    return any(route == p if exact else route.startswith(p) for p, exact in PUBLIC_PATHS)


def test_the_kustomization_lists_every_manifest_and_each_is_kubernetes_shaped() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    for name, doc in DOCS:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), name
        assert "namespace" not in doc["metadata"], f"{name}: the kustomization sets it"


def test_the_worker_environment_loads_as_settings_for_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _one("ConfigMap")["data"]
    container = _container()
    assert container["envFrom"] == [
        {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}}
    ]
    env: dict[str, str] = dict(config)
    from_secrets = set()
    for item in container["env"]:
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            from_secrets.add(item["name"])
            env[item["name"]] = "x" * 40  # long enough for an ack secret
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP"
            env[item["name"]] = POD_IP
        else:
            env[item["name"]] = item["value"]
    for name in [k for k in os.environ if k.startswith("GOVCLOCK_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("KAFKA_BROKER", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = load_settings(env_file=None)  # unknown GOVCLOCK_* names are refused here

    assert not settings.embedded, "a cluster deployment must name its Kafka cluster"
    assert settings.replication_factor >= 3
    replicas = _one("StatefulSet")["spec"]["replicas"]
    assert settings.partitions >= replicas, "workers beyond the partition count stay idle"
    assert settings.web_host == POD_IP
    assert settings.web_port == container["ports"][0]["containerPort"]
    assert str(settings.data_dir) == _mounts()["data"]
    secret_dir = _mounts()["secret"]
    items = {
        i["path"]
        for v in _one("StatefulSet")["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
        for i in v["secret"]["items"]
    }
    for path in (settings.sources_file, settings.roster_file):
        assert path is not None and str(path.parent) == secret_dir and path.name in items
    # Secrets never sit in the ConfigMap: every secret setting comes from the Secret.
    secret_settings = {
        env_name(name)
        for name, info in Settings.model_fields.items()
        if "SecretStr" in str(info.annotation)
    }
    assert secret_settings and secret_settings <= from_secrets
    assert not secret_settings & set(config)
    assert env_name("twilio_account_sid") in from_secrets


def test_probes_and_the_scrape_target_are_paths_the_worker_serves(routes: set[str]) -> None:
    container = _container()
    port = container["ports"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, probe
        assert get["port"] == port["name"], probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # true after recovery
    notes = _one("StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/path"] in routes
    assert int(notes["prometheus.io/port"]) == port["containerPort"]


def test_the_ingress_exposes_exactly_the_public_paths(routes: set[str]) -> None:
    ingress = _one("Ingress")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    exposed = {(p["path"], p["pathType"] == "Exact") for p in paths}
    assert exposed == set(PUBLIC_PATHS)
    public_service = next(
        doc
        for _, doc in DOCS
        if doc["kind"] == "Service" and doc["spec"].get("clusterIP") != "None"
    )
    assert {p["backend"]["service"]["name"] for p in paths} == {public_service["metadata"]["name"]}

    public = {r for r in routes if _is_public(r)}
    assert public == {
        "/v1/events",
        "/v1/hooks/{source_name}",
        "/a/{token}",
        "/v1/channels/twilio/inbound",
        "/v1/channels/twilio/status",
    }
    for internal in ("/metrics", "/v1/obligations", "/v1/internal/reply-candidates"):
        assert internal in routes and not _is_public(internal)
    for path, _ in PUBLIC_PATHS:
        assert any(r.startswith(path) for r in public), f"{path} matches no route"


def test_services_and_the_budget_select_the_worker_pods() -> None:
    statefulset = _one("StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == "Service"}
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} == {"web"}
    budget = _one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_a_wheel_install_holds_every_package_and_the_image_copies_them() -> None:
    """An editable install finds subpackages anyway; the image's wheel install only finds
    what pyproject lists (two subpackages were once left out, and a
    wheel-installed `govclock run` failed at start)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    listed = set(find_packages(where=str(ROOT), include=include))
    tops = {name.rstrip("*") for name in include}
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in tops
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk and on_disk <= listed
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M))
    assert copied == tops
