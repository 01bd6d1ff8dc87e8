"""`besponsa-cds` console script: serve, rules, report, purge, migrate, export-openapi.

serve, report, purge and migrate all use ONE database: BESPONSA_DATABASE_URL (default: the SQLite
file under the XDG state directory, `app.settings.default_database_url`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.settings import get_settings

OPENAPI_PATH = Path("openapi") / "openapi.json"


def openapi_document() -> dict:
    """The OpenAPI document as exported: default settings, whatever the environment says."""
    from app.http.app import create_app
    from app.settings import Settings

    settings = Settings(report_endpoint=False, embedded_fhir=False, log_level="WARNING")
    return create_app(settings).openapi()


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    # The app factory (and every worker process) reads the bound host and port from the
    # environment: the public base URL, and so the in-process /fhir route, follow --port.
    os.environ["BESPONSA_HOST"] = args.host
    os.environ["BESPONSA_PORT"] = str(args.port)
    get_settings.cache_clear()
    settings = get_settings()

    from app.http.auth import StartupRefused, load_clients

    try:  # the same checks create_app makes, before any worker starts
        load_clients(settings)
    except StartupRefused as exc:
        print(f"besponsa-cds: {exc}", file=sys.stderr)
        return 2

    uvicorn.run(
        "app.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        log_config=None,  # create_app installs the structured logging
        access_log=False,  # replaced by the service's own access log (no query strings)
        proxy_headers=True,
        # SIGTERM: stop accepting, let in-flight requests finish (bounded), then the lifespan
        # shutdown commits the card writer's queue.
        timeout_graceful_shutdown=round(settings.graceful_shutdown_seconds),
    )
    return 0


def _rules(args: argparse.Namespace) -> int:
    from app.engine.catalogue import format_catalogue
    from app.engine.decisions import Label

    print(format_catalogue(Label(args.label)))
    return 0


def _write_stdout(text: str) -> int:
    """Print; a reader that closed the pipe early (`report | head`) ends the command quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at interpreter exit
    return 0


def _open_existing_store(what: str) -> Any:
    """The configured store, never created here: None (and a message) when there is none."""
    from sqlalchemy.engine import make_url

    from app.storage.store import open_configured_store

    settings = get_settings()
    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and \
            not Path(url.database).expanduser().exists():
        print(f"besponsa-cds {what}: no database at {shown} (set BESPONSA_DATABASE_URL to the one "
              "the service uses)", file=sys.stderr)
        return None
    store = open_configured_store(settings, migrate=False)
    if store.schema_revision() is None:
        print(f"besponsa-cds {what}: {shown} holds no card store (run `besponsa-cds migrate` or start the "
              "service)", file=sys.stderr)
        store.close()
        return None
    return store


def _report(args: argparse.Namespace) -> int:
    from app.storage.report import render_report

    store = _open_existing_store("report")
    if store is None:
        return 1
    try:
        text = render_report(store, args.format)
    finally:
        store.close()
    if args.format == "json":  # stdout stays one JSON document
        print(f"report of database {store.url}", file=sys.stderr)
        return _write_stdout(text)
    return _write_stdout(f"Database: {store.url}\n{text}")


def _purge(args: argparse.Namespace) -> int:
    days = args.days if args.days is not None else get_settings().retention_days
    if days < 1:
        print("besponsa-cds purge: --days must be at least 1", file=sys.stderr)
        return 2
    store = _open_existing_store("purge")
    if store is None:
        return 1
    cutoff = datetime.now(UTC) - timedelta(days=days)
    try:
        cards, feedback = store.purge(older_than=cutoff)
    finally:
        store.close()
    print(f"purged {cards} cards and {feedback} feedback rows created before "
          f"{cutoff.isoformat(timespec='seconds')} ({days} days) from {store.url}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from app.storage.store import open_configured_store

    store = open_configured_store(get_settings(), migrate=False)
    try:
        changed = store.migrate()
        revision = store.schema_revision()
    finally:
        store.close()
    print(f"{'upgraded' if changed else 'already at'} schema revision {revision}: {store.url}")
    return 0


def _export_openapi(args: argparse.Namespace) -> int:
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="besponsa-cds",
        description="CDS Hooks 2.0 service for inotuzumab ozogamicin (BESPONSA) dose modifications. "
        "Configuration: environment variables prefixed BESPONSA_ (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=settings.host, help="bind address (BESPONSA_HOST, default %(default)s)")
    serve.add_argument("--port", type=int, default=settings.port, help="port (BESPONSA_PORT, default %(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    serve.add_argument("--reload", action="store_true", help="reload on code changes (development)")
    serve.set_defaults(func=_serve)

    rules = commands.add_parser("rules", help="print the rule catalogue as implemented")
    rules.add_argument("--label", choices=["EU", "US"], default=settings.label, help="label (default %(default)s)")
    rules.set_defaults(func=_rules)

    report = commands.add_parser("report", help="print the governance report of stored cards and feedback")
    report.add_argument("--format", choices=["text", "json"], default="text")
    report.set_defaults(func=_report)

    purge = commands.add_parser("purge", help="delete cards (and their feedback) older than the retention window")
    purge.add_argument("--days", type=int, default=None,
                       help=f"keep this many days (BESPONSA_RETENTION_DAYS, default {settings.retention_days})")
    purge.set_defaults(func=_purge)

    migrate = commands.add_parser("migrate", help="upgrade the database schema (once; safe from several replicas)")
    migrate.set_defaults(func=_migrate)

    export = commands.add_parser("export-openapi", help="write the OpenAPI document")
    export.add_argument("--output", default=str(OPENAPI_PATH), help="file to write (default %(default)s)")
    export.set_defaults(func=_export_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
