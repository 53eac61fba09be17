"""The Kubernetes example (deploy/kubernetes/gendetect.yaml) is valid for the
Kubernetes API and agrees with the app: the variables it sets are settings
the API reads, secrets come from a Secret, the probes call the API's health
routes, and the container runs the image's own command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serving.api.routes.health import router as health_router
from serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "gendetect.yaml"
# A version the example must keep working on (HPA autoscaling/v2 is GA from 1.23).
KUBERNETES_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = _one(documents, "Deployment", "gendetect-api")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_document_is_valid_for_the_kubernetes_api(documents: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in documents} >= {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"
    }
    for doc in documents:
        # strict: an unknown or misspelt field is an error, not ignored.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught(documents: list[dict[str, Any]]) -> None:
    # The check above can fail: a probe with a typo'd key is refused.
    broken = yaml.safe_load(yaml.safe_dump(_one(documents, "Deployment", "gendetect-api")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_variables_are_settings_and_secrets_come_from_a_secret(
    documents: list[dict[str, Any]],
) -> None:
    fields = ServingSettings.model_fields
    container = _container(documents)
    config = _one(documents, "ConfigMap", "gendetect")["data"]
    names = set(config) | {e["name"] for e in container["env"]}
    for name in names:
        if name.startswith("GENDETECT_"):
            field = name.removeprefix("GENDETECT_").lower()
            assert field in fields, f"{name} is not a setting of the API"
    # Secret settings (SecretStr) and the database URL, which holds a password.
    secret_fields = {
        f"GENDETECT_{n.upper()}" for n, f in fields.items() if "SecretStr" in str(f.annotation)
    } | {"GENDETECT_DATABASE_URL"}
    assert len(secret_fields) >= 3
    from_secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"GENDETECT_HASH_KEY", "GENDETECT_API_KEY", "GENDETECT_DATABASE_URL"} <= from_secrets
    assert not (secret_fields & set(config)), "a secret setting sits in the ConfigMap"
    assert not any("value" in e for e in container["env"] if e["name"] in secret_fields)


def test_probes_call_the_health_routes(documents: list[dict[str, Any]]) -> None:
    paths = {route.path for route in health_router.routes}
    container = _container(documents)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths


def test_the_container_runs_the_images_command(documents: list[dict[str, Any]]) -> None:
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    assert _container(documents)["command"] == yaml.safe_load(cmd.group(1))


def test_the_autoscaler_scales_the_api_on_cpu(documents: list[dict[str, Any]]) -> None:
    hpa = _one(documents, "HorizontalPodAutoscaler", "gendetect-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "gendetect-api"
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    # Utilisation is measured against the container's CPU request.
    assert "cpu" in _container(documents)["resources"]["requests"]
    assert hpa["minReplicas"] >= 2  # replicas share state: more than one by design


def test_external_services_are_the_ones_the_config_names(documents: list[dict[str, Any]]) -> None:
    external = {d["metadata"]["name"] for d in documents
                if d["kind"] == "Service" and d["spec"].get("type") == "ExternalName"}
    config = _one(documents, "ConfigMap", "gendetect")["data"]
    hosts = {re.match(r"^\w+://([^:/]+)", v).group(1)  # type: ignore[union-attr]
             for v in config.values() if "://" in v}
    assert hosts <= external
