"""Tables of the card and feedback store (schema changes go through Alembic migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

# Every card the service returned, so that feedback can be tied to what was shown.
cards = Table(
    "cards",
    metadata,
    Column("uuid", String(64), primary_key=True),
    Column("service_id", String(100), nullable=False),
    Column("hook_instance", String(100), nullable=False),
    Column("patient_id", String(200), nullable=False),
    Column("decision", String(40), nullable=False),
    Column("rules", JSON, nullable=False),  # ["L-2", ...]
    Column("citations", JSON, nullable=False),
    Column("suggestion_uuids", JSON, nullable=False),
    Column("override_codes", JSON, nullable=False),  # override-reason codes offered on the card
    Column("label", String(8), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
)

# Clinicians' answers (CDS Hooks feedback). user_comment is free text: stored, never logged.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), ForeignKey("cards.uuid"), nullable=False),
    Column("service_id", String(100), nullable=False),
    Column("outcome", String(16), nullable=False),  # accepted | overridden
    Column("accepted_suggestions", JSON, nullable=False),  # suggestion uuids
    Column("override_system", String(255)),
    Column("override_code", String(100)),
    Column("override_display", String(255)),
    Column("user_comment", Text),
    Column("outcome_timestamp", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # Idempotency: the same feedback (card, outcome, time) sent twice is stored once.
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_identity"),
)

# CDS client JWT ids already accepted (CDS Hooks 2.0 replay protection), shared by every worker
# and replica; a row is kept until the token's expiry (plus leeway), then purged.
used_token_ids = Table(
    "used_token_ids",
    metadata,
    Column("iss", String(255), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)
