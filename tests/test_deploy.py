"""deploy/: the Compose file and Kubernetes manifests validate against their schemas and agree with
the service (settings, port, probes, shutdown timing). Docker and a cluster cannot run here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
SETTINGS = {f"BESPONSA_{name.upper()}" for name in Settings.model_fields}


def _manifests() -> dict[str, dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    out = {}
    for name in kustomization["resources"]:
        doc = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
        out[doc["kind"]] = doc
    return out


def test_every_kubernetes_manifest_validates_strictly():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for name in sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"):
        doc = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
        for version in ("1.29.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_manifests_cover_what_a_cluster_needs():
    kinds = set(_manifests())
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret",
            "Job"} <= kinds


def test_deployment_probes_port_and_shutdown_agree_with_the_service(client):
    m = _manifests()
    pod = m["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == Settings.model_fields["port"].default
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    config = m["ConfigMap"]["data"]
    unknown = {k for k in config if k.startswith("BESPONSA_")} - SETTINGS
    assert not unknown, unknown
    assert set(m["Secret"]["stringData"]) <= SETTINGS
    grace = float(config["BESPONSA_GRACEFUL_SHUTDOWN_SECONDS"])
    pre_stop = 5
    writer_flush = 10  # CardWriter.close's default timeout
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop + writer_flush
    assert config["BESPONSA_MIGRATE_ON_START"] == "false"
    job = m["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["besponsa-cds", "migrate"]
    from app.cli import build_parser

    assert build_parser().parse_args(["serve", *container["args"]]).port == 8080
    selector = m["Deployment"]["spec"]["selector"]["matchLabels"]
    assert m["Service"]["spec"]["selector"] == selector == m["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]


def test_compose_file_validates_and_uses_known_settings():
    import json
    import subprocess
    import sys

    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE)], capture_output=True, text=True, timeout=120)
    if "No module named check_jsonschema" in result.stderr:
        pytest.skip("check-jsonschema is not installed (dev extra)")
    assert result.returncode == 0, result.stdout + result.stderr
    services = compose["services"]
    assert {"postgres", "migrate", "cds", "nginx"} <= set(services)
    cds = services["cds"]
    assert set(cds["environment"]) <= SETTINGS, json.dumps(sorted(set(cds["environment"]) - SETTINGS))
    assert cds["environment"]["BESPONSA_MIGRATE_ON_START"] == "false"
    assert services["migrate"]["entrypoint"] == ["besponsa-cds", "migrate"]
    assert "/readyz" in " ".join(cds["healthcheck"]["test"])
    stop = int(cds["stop_grace_period"].rstrip("s"))
    assert stop > float(cds["environment"]["BESPONSA_GRACEFUL_SHUTDOWN_SECONDS"]) + 10  # + the writer's flush
    nginx = (ROOT / "deploy" / "compose" / "nginx.conf").read_text(encoding="utf-8")
    assert "server cds:8080" in nginx and "proxy_next_upstream" in nginx
