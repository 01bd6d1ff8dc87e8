"""besponsa-cds console script: argument parsing and what each command calls."""

from __future__ import annotations

import json
import sys
import types

import pytest

from app import cli


def test_serve_defaults_and_flags(monkeypatch):
    from app.settings import get_settings, public_base_url

    calls = []
    monkeypatch.setattr("uvicorn.run", lambda target, **kw: calls.append((target, kw)))
    monkeypatch.setenv("BESPONSA_HOST", "127.0.0.1")  # restored after the test: serve sets them
    monkeypatch.setenv("BESPONSA_PORT", "8080")
    monkeypatch.delenv("BESPONSA_PUBLIC_BASE_URL", raising=False)
    try:
        assert cli.main(["serve", "--port", "9090", "--workers", "2", "--host", "0.0.0.0"]) == 0
        target, kw = calls[0]
        assert target == "app.http.app:create_app" and kw["factory"] is True
        assert (kw["host"], kw["port"], kw["workers"], kw["reload"]) == ("0.0.0.0", 9090, 2, False)
        assert kw["timeout_graceful_shutdown"] == 20
        # The factory sees the bound port: the public base URL (and in-process /fhir) follow it.
        assert public_base_url(get_settings()) == "http://127.0.0.1:9090"
        monkeypatch.setenv("BESPONSA_PUBLIC_BASE_URL", "https://cds.example.org/")
        get_settings.cache_clear()
        assert public_base_url(get_settings()) == "https://cds.example.org"
    finally:
        get_settings.cache_clear()


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


def test_report_renders_the_configured_store_and_says_which(monkeypatch, tmp_path, capsys):
    from app.settings import get_settings
    from app.storage import open_store
    from tests.test_storage_support import record

    db = tmp_path / "state" / "cards.db"
    store = open_store(f"sqlite:///{db}")
    record(store)
    store.close()
    monkeypatch.setenv("BESPONSA_DATABASE_URL", f"sqlite:///{db}")
    get_settings.cache_clear()
    try:
        assert cli.main(["report", "--format", "json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["totals"]["cards"] == 3  # stdout stays one JSON document
        assert str(db) in err
        assert cli.main(["report"]) == 0
        out, _ = capsys.readouterr()
        assert out.splitlines()[0] == f"Database: sqlite:///{db}"
        assert "Cards shown: 3" in out
    finally:
        get_settings.cache_clear()


def test_report_refuses_a_database_that_does_not_exist_instead_of_reporting_zero(monkeypatch, tmp_path, capsys):
    from app.settings import get_settings

    missing = tmp_path / "nowhere" / "cards.db"
    monkeypatch.setenv("BESPONSA_DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    try:
        assert cli.main(["report"]) == 1
    finally:
        get_settings.cache_clear()
    assert "no database at" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()


def test_default_database_is_one_place_whatever_the_working_directory(monkeypatch, tmp_path):
    from app.settings import Settings

    monkeypatch.delenv("BESPONSA_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    first = Settings().database_url
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Settings().database_url == first == f"sqlite:///{tmp_path}/xdg/besponsa-cds/besponsa-cds.db"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert Settings().database_url.endswith("/.local/state/besponsa-cds/besponsa-cds.db")


def test_migrate_then_purge_use_the_configured_database(monkeypatch, tmp_path, capsys):
    from datetime import UTC, datetime, timedelta

    from app.settings import get_settings
    from app.storage import open_store
    from tests.test_storage_support import make_cards

    url = f"sqlite:///{tmp_path}/m.db"
    monkeypatch.setenv("BESPONSA_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert cli.main(["migrate"]) == 0
        assert "upgraded schema revision" in capsys.readouterr().out
        assert cli.main(["migrate"]) == 0
        assert "already at schema revision" in capsys.readouterr().out
        store = open_store(url, migrate=False)
        now = datetime.now(UTC)
        for age, hook in ((500, "old"), (10, "new")):
            cards, decisions = make_cards()
            store.record_cards(service_id="besponsa-order-sign", hook_instance=hook, patient_id="p1",
                               cards=cards, decisions=decisions, now=now - timedelta(days=age))
        assert cli.main(["purge"]) == 0  # default window: BESPONSA_RETENTION_DAYS (400)
        assert "purged 3 cards" in capsys.readouterr().out
        assert store.counts()["cards"] == 3
        assert cli.main(["purge", "--days", "5"]) == 0
        assert store.counts()["cards"] == 0
        assert cli.main(["purge", "--days", "0"]) == 2
        store.close()
    finally:
        get_settings.cache_clear()


def test_report_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    import os
    import subprocess

    from app.engine.decisions import Decision, DecisionCode
    from app.storage import open_store
    from tests.test_storage_support import NOW, make_cards

    url = f"sqlite:///{tmp_path}/big.db"
    store = open_store(url)
    # 1,000 rules: a report far larger than a pipe's buffer, so `head` closes it mid-write.
    decisions = [Decision(code=DecisionCode.CAUTION, rules=(f"X-{n}",), citations=("SmPC 4.4",),
                          summary="s", detail="d") for n in range(1000)]
    cards, decisions = make_cards(decisions)
    store.record_cards(service_id="besponsa-order-sign", hook_instance="h", patient_id="p1",
                       cards=cards, decisions=decisions, now=NOW)
    store.close()
    env = {**os.environ, "BESPONSA_DATABASE_URL": url}
    script = f"'{sys.executable}' -m app.cli report --format json | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "{"
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 0


def test_export_openapi_writes_the_document(tmp_path, capsys):
    out = tmp_path / "o" / "openapi.json"
    assert cli.main(["export-openapi", "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == cli.openapi_document()


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2


def test_write_to_a_closed_pipe_is_quiet(monkeypatch):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) has gone
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        assert cli._write_stdout("x" * 100_000) == 0  # no BrokenPipeError
    finally:
        monkeypatch.undo()
        try:
            stream.close()
        except OSError:
            pass
