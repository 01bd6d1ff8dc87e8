"""The Dockerfile stays consistent with the package (Docker itself cannot run here)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def _exec_form(value: str) -> list[str]:
    import json

    return json.loads(value)


def test_base_image_is_slim_python_matching_requires_python():
    [base] = _instructions("FROM")
    assert base == "python:3.11-slim"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_entrypoint_is_the_console_script_serving_on_all_interfaces():
    [entry] = _instructions("ENTRYPOINT")
    argv = _exec_form(entry)
    assert argv[:2] == ["besponsa-cds", "serve"]
    assert PYPROJECT["project"]["scripts"][argv[0]] == "app.cli:main"
    from app.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.host == "0.0.0.0"


def test_exposed_port_is_the_default_port_and_healthcheck_uses_it():
    from app.settings import Settings

    [expose] = _instructions("EXPOSE")
    default_port = Settings.model_fields["port"].default
    assert int(expose) == default_port
    [health] = _instructions("HEALTHCHECK")
    assert "curl" not in health and "wget" not in health  # not in the slim image
    cmd = _exec_form(health.split("CMD", 1)[1].strip())
    assert cmd[0] == "python"
    assert f"http://127.0.0.1:{default_port}/healthz" in cmd[-1]


def test_healthcheck_path_is_served(client):
    assert client.get("/healthz").status_code == 200


def test_runs_as_non_root_user_created_in_image():
    [user] = _instructions("USER")
    assert user not in ("root", "0")
    assert any("useradd" in run and user in run for run in _instructions("RUN"))
    assert DOCKERFILE.index("USER") < DOCKERFILE.index("ENTRYPOINT")


def test_installs_the_package_and_copies_every_package_directory():
    installs = [shlex.split(run)[:3] for run in _instructions("RUN")]
    assert ["pip", "install", ".[postgres,otlp]"] in installs  # the package, PostgreSQL- and OTLP-ready
    assert {"postgres", "otlp"} <= set(PYPROJECT["project"]["optional-dependencies"])
    copied = {shlex.split(c)[0] for c in _instructions("COPY")}
    copied |= {p for c in _instructions("COPY") for p in shlex.split(c)[:-1]}
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    for package in packages:
        assert (ROOT / package / "__init__.py").exists() or (ROOT / package).is_dir()


@pytest.mark.parametrize("needed", ["app", "cds_hooks", "fhir_mappings", "pyproject.toml", "README.md"])
def test_dockerignore_keeps_what_the_build_copies(needed):
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    assert needed not in ignored
    assert ".venv" in ignored and ".git" in ignored
