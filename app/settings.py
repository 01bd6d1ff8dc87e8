"""Service settings, from environment variables prefixed BESPONSA_ (see README, Configuration)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    """The SQLite default, in ONE place whatever the working directory: the XDG state directory,
    `$XDG_STATE_HOME/besponsa-cds/besponsa-cds.db` (`~/.local/state/besponsa-cds/besponsa-cds.db`)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(state).expanduser().resolve() / 'besponsa-cds' / 'besponsa-cds.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BESPONSA_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface `besponsa-cds serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `besponsa-cds serve` listens on.")
    label: Literal["EU", "US"] = Field("EU", description="Label the rules follow: EU SmPC or US PI.")
    env: Literal["development", "production"] = Field(
        "development",
        description="Profile. production refuses to start without trusted clients, with auth off, CORS '*' or the demo FHIR server.",
    )
    auth: Literal["off", "jwt"] = Field(
        "off", description="CDS client authentication: jwt (CDS Hooks 2.0 signed JWT) or off (development only)."
    )
    trusted_clients_file: str | None = Field(
        None, description="JSON list of trusted CDS clients (iss, keys, jku_allowlist, fhir_servers, tenant); see Security."
    )
    auth_leeway_seconds: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp, iat and nbf.")
    auth_max_token_lifetime_seconds: int = Field(
        3600, ge=60, le=86400, description="Tokens whose exp is further ahead than this are refused (bounds the jti store)."
    )
    jwks_timeout_seconds: float = Field(2.0, gt=0, le=30, description="Time-out of one JWKS fetch.")
    jwks_min_refresh_seconds: float = Field(
        60.0, ge=0, description="An unknown kid re-fetches a JWK Set at most this often per URL."
    )
    jwks_cache_seconds: float = Field(3600.0, gt=0, description="A fetched JWK Set is re-read after this long.")
    cors_origins: str = Field(
        "*", description="Comma-separated allowed CORS origins (scheme://host[:port]); '*' for any, development only."
    )
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL of the card and feedback store, the same for serve, report, purge "
        "and migrate (SQLite default: `~/.local/state/besponsa-cds/besponsa-cds.db`, see Production).",
    )
    db_pool_size: int = Field(5, ge=1, description="PostgreSQL connections kept open per process.")
    db_max_overflow: int = Field(5, ge=0, description="Extra PostgreSQL connections a process may open under load.")
    db_pool_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for a pooled connection before the database call fails."
    )
    migrate_on_start: bool = Field(
        True,
        description="Upgrade the schema at start-up (under a PostgreSQL advisory lock); false when a "
        "`besponsa-cds migrate` step runs first.",
    )
    store_queue_size: int = Field(
        10000, ge=1, description="Hook responses waiting for the background card writer (bounded queue)."
    )
    store_batch_size: int = Field(200, ge=1, description="Most hook responses the card writer commits at once.")
    store_flush_interval_seconds: float = Field(
        0.05, gt=0, le=5, description="Longest time a recorded card waits before the writer commits it."
    )
    feedback_card_wait_seconds: float = Field(
        1.0,
        ge=0,
        description="How long feedback naming a card not yet in the database waits for another "
        "replica's writer to commit it before it is refused as unknown.",
    )
    retention_days: int = Field(400, ge=1, description="Days cards and their feedback are kept (`besponsa-cds purge`).")
    purge_interval_hours: float = Field(
        24.0, ge=0, description="Hours between automatic purges in `serve`; 0 turns the periodic purge off."
    )
    graceful_shutdown_seconds: float = Field(
        20.0, gt=0, description="On SIGTERM, longest wait for in-flight requests before the process exits."
    )
    embedded_fhir: bool = Field(True, description="Serve the bundled demo FHIR R4 server at /fhir.")
    public_base_url: str = Field(
        "",
        description="Base URL at which clients reach this service; default `http://{host}:{port}` "
        "(127.0.0.1 for 0.0.0.0). Its `/fhir` is answered in process when EMBEDDED_FHIR is on.",
    )
    fhir_timeout_seconds: float = Field(
        2.5, gt=0, description="Total time budget for FHIR server queries in one hook call."
    )
    fhir_max_pages: int = Field(20, ge=1, description="Most Bundle `next` pages followed per query.")
    fhir_max_response_bytes: int = Field(
        20_000_000, ge=1024,
        description="Most decoded bytes read from one FHIR answer (a larger or gzip-bomb answer is not read).",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes; larger ones get 413 before they are read "
        "(a year of daily labs in prefetch is about 4.3 MB).",
    )
    max_json_depth: int = Field(
        64, ge=8, le=1000, description="Deepest JSON nesting accepted in a request body; deeper gets 400."
    )
    inline_max_bytes: int = Field(
        256 * 1024, ge=0,
        description="Hook calls whose data (request body plus FHIR answers fetched for it) is at most this "
        "many bytes are decoded and decided on the event loop; larger ones in a worker thread (0: always).",
    )
    inline_max_in_flight: int = Field(
        8, ge=0,
        description="Hook calls run on the event loop only while at most this many HTTP requests are in "
        "flight in the process; beyond, in worker threads, so that an overload never starves the others.",
    )
    inline_max_loop_lag_ms: float = Field(
        100, ge=0,
        description="... and only while the event loop keeps time: its 10 ms timer fired less than this "
        "late (ms). 0: never on the loop.",
    )
    report_endpoint: bool = Field(False, description="Expose GET /governance/report (read-only JSON).")
    premedication_file: str | None = Field(
        None,
        description="JSON premedication template offered on premedication cards (shape of app/data/premedication.json).",
    )
    patient_view_plan_card: bool = Field(
        True,
        description="patient-view: one info card with the next dose and what to measure before "
        "it when no rule objects (false: no card when all is well).",
    )
    log_level: str = Field("INFO", description="Python log level.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    policy_file: str | None = Field(
        None, description="JSON file overriding engine policy values (tolerances, windows, ULNs)."
    )
    qt_drugs_file: str | None = Field(
        None,
        description="CSV replacing the bundled QT-prolonging drug list (app/terminology/qt_prolonging.csv).",
    )
    value_sets_file: str | None = Field(
        None,
        description="Extra value-set CSV (same columns) added to the bundled ones, e.g. local lab codes.",
    )

    @model_validator(mode="after")
    def _derive_public_base_url(self) -> Settings:
        """Unset, the public base URL is the bound host and port (127.0.0.1 for 0.0.0.0), so the
        in-process /fhir route follows `serve --port` and never shadows a real server on 8080."""
        if not self.public_base_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            host = f"[{host}]" if ":" in host else host
            self.public_base_url = f"http://{host}:{self.port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip().rstrip("/") for o in value.split(",") if o.strip()):
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path
                                  or parts.query or "@" in parts.netloc):
                raise ValueError(f"'{origin}' is not an origin (scheme://host[:port]) or '*'")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def production_problems(self, trusted_clients: int) -> list[str]:
        """Why this configuration must not run in production (empty when it may)."""
        problems = []
        if self.auth != "jwt":
            problems.append("BESPONSA_AUTH must be jwt (client authentication is off)")
        if trusted_clients == 0:
            problems.append("BESPONSA_TRUSTED_CLIENTS_FILE must list at least one trusted client")
        if "*" in self.cors_origin_list:
            problems.append("BESPONSA_CORS_ORIGINS must list origins, not '*'")
        if self.embedded_fhir:
            problems.append("BESPONSA_EMBEDDED_FHIR must be false (the demo FHIR server holds synthetic patients)")
        if not self.public_base_url.startswith("https://"):
            problems.append("BESPONSA_PUBLIC_BASE_URL must be the service's https URL (CDS Hooks requires TLS; it is the JWT aud)")
        return problems


def public_base_url(settings: Settings) -> str:
    """BESPONSA_PUBLIC_BASE_URL, else derived from the host and port the service binds (the
    settings fill it in: `settings.public_base_url` is always a URL)."""
    return settings.public_base_url.rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
