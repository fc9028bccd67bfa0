"""The Kubernetes manifests parse and say what the services need: probes, resources, drain time, autoscaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core import contracts
from services.devstack.settings import PROJECT_ROOT
from services.generator.settings import GeneratorSettings

K8S = PROJECT_ROOT / "deploy" / "k8s"
SERVICES = {"ingress": 8701, "status": 8702, "retriever": 8703, "generator": 8704, "ui": 8700}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = {}
    for name in kustomization["resources"]:
        for doc in _docs(K8S / name):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_kustomization_lists_every_manifest_but_the_secret_example():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_deployment_with_truthful_probes_resources_and_config(name):
    docs = _all()
    service, deployment = docs[("Service", name)], docs[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = container["ports"][0]

    assert port["containerPort"] == SERVICES[name]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert {"configMapRef": {"name": "relay-config"}} in container["envFrom"]
    live, ready = container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]
    if name == "ui":
        assert live == ready == "/_stcore/health"
    else:
        assert (live, ready) == ("/health", "/ready")
        assert {"secretRef": {"name": "relay-secrets"}} in container["envFrom"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_generator_grace_period_outlasts_its_drain():
    docs = _all()
    pod = docs[("Deployment", "generator")]["spec"]["template"]["spec"]
    drain = float(docs[("ConfigMap", "relay-config")]["data"].get("GENERATOR_DRAIN_S", GeneratorSettings().drain_s))
    assert pod["terminationGracePeriodSeconds"] >= drain + 10


def test_generator_scales_on_the_lag_of_its_jetstream_consumer():
    scaled = _all()[("ScaledObject", "generator")]
    (trigger,) = scaled["spec"]["triggers"]

    assert scaled["spec"]["scaleTargetRef"]["name"] == "generator"
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == contracts.STREAM
    assert trigger["metadata"]["consumer"] == contracts.generator_consumer().durable_name
    assert trigger["metadata"]["natsServerMonitoringEndpoint"].endswith(":8222")
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_nats_keeps_jetstream_on_a_volume_with_explicit_sync():
    docs = _all()
    conf = docs[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    nats = docs[("StatefulSet", "nats")]["spec"]

    assert "store_dir: /data/jetstream" in conf and "sync_interval:" in conf
    assert nats["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert docs[("ConfigMap", "relay-config")]["data"]["NATS_URL"] == "nats://nats:4222"
