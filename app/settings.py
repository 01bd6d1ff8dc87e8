"""Service settings, from environment variables prefixed BESPONSA_ (see README, Configuration)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BESPONSA_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface `besponsa-cds serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `besponsa-cds serve` listens on.")
    label: Literal["EU", "US"] = Field("EU", description="Label the rules follow: EU SmPC or US PI.")
    cors_origins: str = Field("*", description="Comma-separated allowed CORS origins; '*' for any.")
    database_url: str = Field(
        "sqlite:///./var/besponsa-cds.db",
        description="SQLAlchemy URL of the card and feedback store (SQLite file or PostgreSQL).",
    )
    embedded_fhir: bool = Field(True, description="Serve the bundled demo FHIR R4 server at /fhir.")
    public_base_url: str = Field(
        "http://127.0.0.1:8080",
        description="Base URL at which clients reach this service (used in examples and links).",
    )
    fhir_timeout_seconds: float = Field(
        2.5, gt=0, description="Total time budget for FHIR server queries in one hook call."
    )
    fhir_max_pages: int = Field(20, ge=1, description="Most Bundle `next` pages followed per query.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes; larger ones get 413 before they are read "
        "(a year of daily labs in prefetch is about 4.3 MB).",
    )
    max_json_depth: int = Field(
        64, ge=8, le=1000, description="Deepest JSON nesting accepted in a request body; deeper gets 400."
    )
    report_endpoint: bool = Field(False, description="Expose GET /governance/report (read-only JSON).")
    premedication_file: str | None = Field(
        None,
        description="JSON premedication template offered on premedication cards (shape of app/data/premedication.json).",
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
