"""`besponsa-cds` console script: serve, rules, report, export-openapi."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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

    from app.http.auth import StartupRefused, load_clients

    try:  # the same checks create_app makes, before any worker starts
        load_clients(get_settings())
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
    )
    return 0


def _rules(args: argparse.Namespace) -> int:
    from app.engine.catalogue import format_catalogue
    from app.engine.decisions import Label

    print(format_catalogue(Label(args.label)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from app.storage import open_store
    from app.storage.report import render_report

    print(render_report(open_store(get_settings().database_url), args.format))
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

    export = commands.add_parser("export-openapi", help="write the OpenAPI document")
    export.add_argument("--output", default=str(OPENAPI_PATH), help="file to write (default %(default)s)")
    export.set_defaults(func=_export_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
