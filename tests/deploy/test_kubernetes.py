"""The Kubernetes manifests, rendered per overlay by kustomize (`kubectl kustomize`), validate against the Kubernetes schemas and
agree with the server: probe, service and scrape ports, health service name, drain time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from server.app import SERVICE_NAME
from server.config import ServerConfig, env_name
from tests.deploy.dockerfile import ROOT

OVERLAYS = ["gpu", "cpu"]
KUBERNETES_VERSION = "1.30.0"  # the oldest release with the preStop sleep action
BUILT_IN = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed: the overlays cannot be rendered")


def kustomize(directory: Path) -> list[dict]:
    """The documents `kubectl apply -k` would apply: the real kustomize, not an imitation."""
    # The load restrictor lets a test's overlay in a temporary directory use the repository's files.
    command = [KUBECTL, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)]
    return list(yaml.safe_load_all(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout))


def render(overlay: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in kustomize(ROOT / "deploy" / "kubernetes" / "overlays" / overlay)}


@pytest.fixture(params=OVERLAYS, scope="module")
def manifests(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict]:
    return render(request.param)


def server_container(manifests: dict) -> dict:
    (container,) = manifests["Deployment", "nmt-serving"]["spec"]["template"]["spec"]["containers"]
    return container


def test_every_built_in_resource_validates_against_the_kubernetes_schema(manifests: dict) -> None:
    assert BUILT_IN <= {kind for kind, _ in manifests}
    for (kind, name), document in manifests.items():
        if kind in BUILT_IN:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_probes_and_ports_agree_with_the_server(manifests: dict) -> None:
    container = server_container(manifests)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= {env_name(name) for name in ServerConfig.__dataclass_fields__}, "an NMT_ variable the server does not read"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(env["NMT_PORT"]), "metrics": int(env["NMT_METRICS_PORT"]), "http": int(env["NMT_HTTP_PORT"])}
    assert (ports["grpc"], ports["metrics"], ports["http"]) == (ServerConfig().port, ServerConfig().metrics_port, ServerConfig().http_port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert container["readinessProbe"]["grpc"]["service"] == container["startupProbe"]["grpc"]["service"] == SERVICE_NAME
    annotations = manifests["Deployment", "nmt-serving"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == ports["metrics"]
    service_ports = {p["name"]: p for p in manifests["Service", "nmt-serving"]["spec"]["ports"]}
    assert service_ports["grpc"]["appProtocol"] == "grpc" and service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["metrics"]["targetPort"] == "metrics" and service_ports["http"]["targetPort"] == "http"
    assert manifests["Service", "nmt-serving-headless"]["spec"]["clusterIP"] == "None"
    (endpoint,) = manifests["ServiceMonitor", "nmt-serving"]["spec"]["endpoints"]
    assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"


def test_termination_grace_outlasts_the_drain_and_the_pod_runs_locked_down(manifests: dict) -> None:
    pod = manifests["Deployment", "nmt-serving"]["spec"]["template"]["spec"]
    container = server_container(manifests)
    drain = float({e["name"]: e["value"] for e in container["env"]}["NMT_DRAIN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] and not container["securityContext"]["allowPrivilegeEscalation"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert manifests["PodDisruptionBudget", "nmt-serving"]["spec"]["minAvailable"] >= 1
    assert manifests["HorizontalPodAutoscaler", "nmt-serving"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_the_gpu_overlay_asks_for_one_gpu_and_the_cpu_overlay_for_none() -> None:
    gpu, cpu = server_container(render("gpu")), server_container(render("cpu"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and gpu["image"].endswith(":gpu")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and cpu["image"].endswith(":cpu")
    gpu_env = {e["name"]: e["value"] for e in gpu["env"]}
    assert gpu_env["NMT_DEVICE"] == "cuda" and gpu_env["NMT_DECODE_WORKERS"] == "2"


def test_the_queue_depth_autoscaling_example_is_valid_and_names_a_real_metric() -> None:
    example = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "examples" / "hpa-queue-depth.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    assert example["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nmt_queue_depth"


def test_the_model_volume_example_patches_into_a_valid_deployment(tmp_path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        # kustomize takes a directory resource only by a relative path
        f"resources:\n  - {os.path.relpath(ROOT / 'deploy/kubernetes/overlays/cpu', overlay)}\npatches:\n  - path: {ROOT / 'deploy/kubernetes/examples/model-volume.yaml'}\n"
    )
    deployment = next(d for d in kustomize(overlay) if d["kind"] == "Deployment")
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NMT_MODEL_REPOSITORY"] == "/models" and env["NMT_DEVICE"] == "cpu"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/models"}
