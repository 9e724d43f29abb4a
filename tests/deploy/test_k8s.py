"""The Kubernetes manifests: rendered by the real `kubectl kustomize`, every object validated offline against the
Kubernetes schemas, and the probes, port, settings and index paths checked against the app and the CLI themselves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kgqa.cli import build_parser
from kgqa.service.app import create_app
from kgqa.service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"
KINDS = {"ConfigMap", "PersistentVolumeClaim", "Job", "Deployment", "Service", "HorizontalPodAutoscaler"}
KINDS |= {"PodDisruptionBudget"}


def render(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed (Debian: apt-get install kubernetes-client; kustomize v4 or newer)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # nothing deprecated
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def objects(request: pytest.FixtureRequest) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in render(K8S / request.param)}


def test_every_object_is_valid_against_the_kubernetes_schemas(objects: dict[str, dict]) -> None:
    assert set(objects) >= KINDS
    for doc in objects.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any unknown or wrong field


def test_the_validator_rejects_a_wrong_field(objects: dict[str, dict]) -> None:
    deployment = yaml.safe_load(yaml.safe_dump(objects["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _container(objects: dict[str, dict]) -> dict:
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_probes_and_port_are_the_apps_own(objects: dict[str, dict]) -> None:
    routes = set(create_app(ServiceSettings()).openapi()["paths"])
    container = _container(objects)
    config = objects["ConfigMap"]["data"]
    [port] = container["ports"]
    assert port["containerPort"] == int(config["KGQA_PORT"])
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["path"] in routes
        assert get["port"] == port["name"]
    service_port = objects["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"]
    assert (
        objects["Service"]["spec"]["selector"].items()
        <= objects["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_config_is_valid_service_settings_and_listens_beyond_loopback(objects: dict[str, dict]) -> None:
    config = objects["ConfigMap"]["data"]
    assert all(key.startswith("KGQA_") for key in config)
    settings = ServiceSettings(**{key.removeprefix("KGQA_").lower(): value for key, value in config.items()})
    assert settings.host == "0.0.0.0"
    container = _container(objects)
    assert container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    grace = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.graceful_shutdown_s


def test_the_job_builds_the_index_the_replicas_serve_read_only(objects: dict[str, dict]) -> None:
    config = objects["ConfigMap"]["data"]
    [job] = objects["Job"]["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(job["command"][1:])  # the real CLI accepts the Job's command
    assert job["command"][0] == "kgqa" and args.index_command == "build"
    assert str(args.out) == config["KGQA_INDEX"]
    deployment = objects["Deployment"]["spec"]["template"]["spec"]
    [data] = [v for v in deployment["volumes"] if "persistentVolumeClaim" in v]
    assert data["persistentVolumeClaim"]["readOnly"] is True
    [mount] = [m for m in _container(objects)["volumeMounts"] if m["name"] == data["name"]]
    assert mount["readOnly"] is True and config["KGQA_INDEX"].startswith(mount["mountPath"] + "/")
    [job_volume] = [v for v in objects["Job"]["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert job_volume["persistentVolumeClaim"]["claimName"] == data["persistentVolumeClaim"]["claimName"]


def test_non_root_read_only_root_with_measured_resources(objects: dict[str, dict]) -> None:
    for kind in ("Deployment", "Job"):
        pod = objects[kind]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]}  # the one place the app writes
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert "useradd --create-home --uid 10001" in (REPO / "Dockerfile").read_text()


def test_the_overlay_sets_namespace_and_image(objects: dict[str, dict]) -> None:
    image = _container(objects)["image"]
    if "Namespace" in objects:  # the example overlay
        assert all(doc["metadata"].get("namespace") == "kgqa" for kind, doc in objects.items() if kind != "Namespace")
        assert re.fullmatch(r"registry\.example\.com/kgqa:[\w.-]+", image)
        assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    else:
        assert image == "kgqa:latest"
