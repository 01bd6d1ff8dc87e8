"""besponsa-cds console script: argument parsing and what each command calls."""

from __future__ import annotations

import json
import sys
import types

import pytest

from app import cli


def test_serve_defaults_and_flags(monkeypatch):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda target, **kw: calls.append((target, kw)))
    assert cli.main(["serve", "--port", "9090", "--workers", "2", "--host", "0.0.0.0"]) == 0
    target, kw = calls[0]
    assert target == "app.http.app:create_app" and kw["factory"] is True
    assert (kw["host"], kw["port"], kw["workers"], kw["reload"]) == ("0.0.0.0", 9090, 2, False)


def test_serve_host_and_port_from_environment(monkeypatch):
    from app.settings import get_settings

    monkeypatch.setenv("BESPONSA_HOST", "0.0.0.0")
    monkeypatch.setenv("BESPONSA_PORT", "8181")
    get_settings.cache_clear()
    try:
        args = cli.build_parser().parse_args(["serve"])
    finally:
        get_settings.cache_clear()
    assert (args.host, args.port) == ("0.0.0.0", 8181)


def test_serve_default_binds_localhost_8080(monkeypatch):
    monkeypatch.delenv("BESPONSA_HOST", raising=False)
    monkeypatch.delenv("BESPONSA_PORT", raising=False)
    from app.settings import get_settings

    get_settings.cache_clear()
    args = cli.build_parser().parse_args(["serve"])
    get_settings.cache_clear()
    assert (args.host, args.port, args.workers, args.reload) == ("127.0.0.1", 8080, 1, False)


def test_rules_prints_the_catalogue_for_the_label(monkeypatch, capsys):
    import app.engine.catalogue as catalogue

    monkeypatch.setattr(catalogue, "format_catalogue", lambda label: f"catalogue for {label.value}", raising=False)
    assert cli.main(["rules", "--label", "US"]) == 0
    assert capsys.readouterr().out.strip() == "catalogue for US"


def test_report_renders_the_store(monkeypatch, capsys):
    storage = types.ModuleType("app.storage")
    storage.open_store = lambda url: ("store", url)
    report = types.ModuleType("app.storage.report")
    report.render_report = lambda store, fmt: json.dumps({"store": store[0], "format": fmt})
    monkeypatch.setitem(sys.modules, "app.storage", storage)
    monkeypatch.setitem(sys.modules, "app.storage.report", report)
    assert cli.main(["report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"store": "store", "format": "json"}


def test_export_openapi_writes_the_document(tmp_path, capsys):
    out = tmp_path / "o" / "openapi.json"
    assert cli.main(["export-openapi", "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == cli.openapi_document()


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
