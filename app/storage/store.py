"""CardStore: every card shown and the clinicians' feedback, in SQLite (default) or PostgreSQL.

`open_store(url)` creates the SQLite directory if needed and upgrades the schema to the newest
Alembic migration (shipped in `app/storage/migrations`; on PostgreSQL under an advisory lock, so
replicas starting together migrate once). Methods are synchronous (SQLAlchemy 2.x Core); HTTP
handlers call them in a thread pool, the card writer (`app/storage/writer.py`) from its thread.
Free-text user comments are stored, never logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from app import observability, overrides
from app.engine.decisions import Decision
from app.storage.models import cards as cards_t
from app.storage.models import feedback as feedback_t
from app.storage.models import used_token_ids as token_ids_t
from cds_hooks.cards import Card
from cds_hooks.feedback import FeedbackItem

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x6265_7370  # pg_advisory_xact_lock key: one migrator at a time ("besp")


class FeedbackRejected(Exception):
    """Feedback that cannot be tied to what was shown; nothing of the request was stored."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


@dataclass(frozen=True)
class FeedbackResult:
    received: int
    stored: int  # new rows
    duplicates: int  # already stored (idempotent re-send)


def _rule_key(rule: str) -> tuple[str, int, str]:
    m = re.match(r"([A-Za-z]+)-(\d+)", rule)
    return (m.group(1), int(m.group(2)), rule) if m else (rule, 0, rule)


_PURGE_EVERY_SECONDS = 60.0  # expired token ids are deleted at most this often per store


class CardStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._purged_at = float("-inf")

    # ------------------------------------------------------------------ lifecycle

    def migrate(self) -> bool:
        """Upgrade the schema to head (idempotent). On PostgreSQL the upgrade runs under a
        transaction-scoped advisory lock: replicas starting at the same instant wait for the first,
        then find the schema at head. True if this call changed the schema."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            if before == head:
                log.info("database schema already at %s", head)
                return False
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("database schema upgraded from %s to %s", before or "empty", head)
        return True

    def schema_revision(self) -> str | None:
        """The schema's Alembic revision (None before the first migration)."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> None:
        """Raise unless the database answers and holds the migrated schema (readiness)."""
        with self.engine.connect() as conn:
            if conn.execute(text("SELECT version_num FROM alembic_version")).first() is None:
                raise RuntimeError("the database schema has not been migrated")

    @property
    def url(self) -> str:
        """The database URL without its password (for `report` and logs)."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writes

    def record_cards(
        self,
        *,
        service_id: str,
        hook_instance: str,
        patient_id: str,
        cards: Sequence[Card],
        decisions: Sequence[Decision],
        now: datetime,
    ) -> int:
        """Record the cards of one response (cards[i] was built from decisions[i]). Returns rows
        added; a card uuid already stored is left as it is."""
        rows = self.card_rows(service_id=service_id, hook_instance=hook_instance, patient_id=patient_id,
                              cards=cards, decisions=decisions, now=now)
        if not rows:
            return 0
        with self.engine.begin() as conn:
            added = self._insert_ignore(conn, cards_t, rows, ["uuid"])
        log.info("recorded %d cards", added, extra={"hookInstance": hook_instance})
        return added

    @staticmethod
    def card_rows(
        *,
        service_id: str,
        hook_instance: str,
        patient_id: str,
        cards: Sequence[Card],
        decisions: Sequence[Decision],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """The `cards` rows of one response (cards[i] was built from decisions[i])."""
        if len(cards) != len(decisions):
            raise ValueError(f"{len(cards)} cards but {len(decisions)} decisions")
        rows = []
        for card, decision in zip(cards, decisions, strict=True):
            rows.append({
                "uuid": card.uuid,
                "service_id": service_id,
                "hook_instance": hook_instance,
                "patient_id": patient_id,
                "decision": decision.code.value,
                "rules": list(decision.rules),
                "citations": list(decision.citations),
                "suggestion_uuids": [s.uuid for s in card.suggestions or []],
                "override_codes": [c.code for c in card.overrideReasons or []],
                "label": decision.label.value,
                "created_at": now,
            })
        return rows

    def insert_card_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert many `card_rows` in ONE transaction (the card writer's batch); a uuid already
        stored is left as it is. Returns rows added."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, cards_t, rows, ["uuid"])

    def known_cards(self, uuids: Sequence[str]) -> set[str]:
        """The uuids among `uuids` that are stored."""
        if not uuids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(select(cards_t.c.uuid).where(cards_t.c.uuid.in_(list(uuids)))).scalars())

    def purge(self, *, older_than: datetime, batch: int = 5000) -> tuple[int, int]:
        """Delete cards created before `older_than` and the feedback on them (retention), in
        batches of `batch` cards per transaction. Returns (cards, feedback) deleted."""
        cards_deleted = feedback_deleted = 0
        while True:
            with self.engine.begin() as conn:
                uuids = list(conn.execute(select(cards_t.c.uuid).where(cards_t.c.created_at < older_than)
                                          .limit(batch)).scalars())
                if not uuids:
                    break
                feedback_deleted += conn.execute(
                    delete(feedback_t).where(feedback_t.c.card_uuid.in_(uuids))).rowcount or 0
                cards_deleted += conn.execute(delete(cards_t).where(cards_t.c.uuid.in_(uuids))).rowcount or 0
        log.info("purged %d cards and %d feedback rows created before %s", cards_deleted, feedback_deleted,
                 older_than.isoformat(timespec="seconds"))
        return cards_deleted, feedback_deleted

    def purge_retention(self, *, now: datetime, retention_days: int) -> tuple[int, int]:
        """`purge` of everything older than `retention_days` before `now`."""
        return self.purge(older_than=now - timedelta(days=retention_days))

    def record_feedback(
        self, service_id: str, items: Sequence[FeedbackItem], now: datetime
    ) -> FeedbackResult:
        """Store feedback atomically: every item must name a card this service showed (and, when
        accepted, suggestions of that card; an override reason of this service's code system must
        have been offered on it), else FeedbackRejected and nothing is stored."""
        with self.engine.begin() as conn:
            wanted = {i.card for i in items}
            known = {
                r.uuid: r
                for r in conn.execute(
                    select(cards_t.c.uuid, cards_t.c.service_id, cards_t.c.suggestion_uuids,
                           cards_t.c.override_codes).where(cards_t.c.uuid.in_(wanted))
                )
            }
            errors: list[dict[str, str]] = []
            for n, item in enumerate(items):
                row = known.get(item.card)
                if row is None or row.service_id != service_id:
                    errors.append({"field": f"feedback[{n}].card",
                                   "message": f"unknown card uuid for service '{service_id}'"})
                    continue
                missing = set(item.accepted_ids) - set(row.suggestion_uuids or [])
                if missing:
                    errors.append({"field": f"feedback[{n}].acceptedSuggestions",
                                   "message": f"not suggestions of this card: {', '.join(sorted(missing))}"})
                reason = item.reason
                if reason and reason.system == overrides.OVERRIDE_REASON_SYSTEM and \
                        reason.code not in (row.override_codes or []):
                    errors.append({"field": f"feedback[{n}].overrideReason.reason.code",
                                   "message": f"'{reason.code}' was not offered on this card"})
            if errors:
                raise FeedbackRejected(errors)
            stored = 0
            outcomes: dict[str, list[str]] = {"stored": [], "duplicate": []}
            for item in items:
                reason = item.reason
                display = reason.display if reason else None
                if reason and not display and overrides.is_known(reason.system, reason.code):
                    display = overrides.REASONS[reason.code].display
                added = self._insert_ignore(conn, feedback_t, [{
                    "card_uuid": item.card,
                    "service_id": service_id,
                    "outcome": item.outcome,
                    "accepted_suggestions": item.accepted_ids,
                    "override_system": reason.system if reason else None,
                    "override_code": reason.code if reason else None,
                    "override_display": display,
                    "user_comment": item.user_comment,
                    "outcome_timestamp": item.outcomeTimestamp,
                    "received_at": now,
                }], ["card_uuid", "outcome", "outcome_timestamp"])
                stored += added
                outcomes["stored" if added else "duplicate"].append(item.outcome)
        for kind, seen in outcomes.items():  # counted once committed
            observability.feedback_counted(service_id, seen, kind)
        result = FeedbackResult(len(items), stored, len(items) - stored)
        log.info("feedback for service %s: %d stored, %d duplicates", service_id, result.stored,
                 result.duplicates)
        return result

    def remember_token_id(self, iss: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record a CDS client JWT id (CDS Hooks 2.0 replay protection) until `expires_at`.

        True when (iss, jti) was not seen before or its record has expired; False for a replay.
        The database arbitrates, so every worker and replica sharing it agrees: of two concurrent
        calls with one jti exactly one gets True."""
        with self.engine.begin() as conn:
            if time.monotonic() - self._purged_at > _PURGE_EVERY_SECONDS:
                conn.execute(token_ids_t.delete().where(token_ids_t.c.expires_at <= now))
                self._purged_at = time.monotonic()
            else:
                conn.execute(token_ids_t.delete().where(
                    token_ids_t.c.iss == iss, token_ids_t.c.jti == jti, token_ids_t.c.expires_at <= now))
            row = {"iss": iss, "jti": jti, "expires_at": expires_at}
            return self._insert_ignore(conn, token_ids_t, [row], ["iss", "jti"]) == 1

    @staticmethod
    def _insert_ignore(conn: Connection, table: Any, rows: Sequence[dict[str, Any]], keys: list[str]) -> int:
        """INSERT each of `rows` unless a row with the same `keys` exists; the number inserted.

        One statement for any number of rows, without `.values()`: its compiled form is cached, and
        SQLAlchemy's "insertmanyvalues" sends it in bounded multi-row chunks. A statement built
        with the batch's values was compiled on every commit, a third of the card writer's CPU
        (issue #11)."""
        if not rows:
            return 0
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c[keys[0]])
            return len(conn.execute(stmt, list(rows)).all())  # RETURNING: rowcount is not reliable here
        added = 0
        for row in rows:
            exists = conn.execute(
                select(func.count()).select_from(table).where(*(table.c[k] == row[k] for k in keys))
            ).scalar_one()
            if not exists:
                conn.execute(table.insert().values(**row))
                added += 1
        return added

    # ------------------------------------------------------------------ reads

    def get_card(self, uuid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cards_t).where(cards_t.c.uuid == uuid)).mappings().first()
        return dict(row) if row else None

    def feedback_for(self, card_uuid: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(feedback_t).where(feedback_t.c.card_uuid == card_uuid).order_by(feedback_t.c.id)
            ).mappings().all()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "cards": conn.execute(select(func.count()).select_from(cards_t)).scalar_one(),
                "feedback": conn.execute(select(func.count()).select_from(feedback_t)).scalar_one(),
            }

    def report(self) -> dict[str, Any]:
        """Per rule: cards shown, accepted, overridden, without feedback, override reasons.

        A card counts under each rule that produced it; its outcome is its latest feedback (by
        outcomeTimestamp). Override reasons are counted on overridden cards.
        """
        with self.engine.connect() as conn:
            latest: dict[str, Any] = {}
            for f in conn.execute(select(feedback_t).order_by(
                    feedback_t.c.outcome_timestamp, feedback_t.c.received_at, feedback_t.c.id)):
                latest[f.card_uuid] = f
            feedback_rows = conn.execute(select(func.count()).select_from(feedback_t)).scalar_one()
            per_rule: dict[str, dict[str, Any]] = defaultdict(lambda: {
                "shown": 0, "accepted": 0, "overridden": 0, "noFeedback": 0,
                "decisions": Counter(), "reasons": Counter(), "overriddenWithoutReason": 0,
            })
            totals = Counter()
            for card in conn.execute(select(cards_t.c.uuid, cards_t.c.decision, cards_t.c.rules)):
                fb = latest.get(card.uuid)
                outcome = fb.outcome if fb else None
                totals["cards"] += 1
                totals[outcome or "noFeedback"] += 1
                for rule in card.rules or ["(none)"]:
                    r = per_rule[rule]
                    r["shown"] += 1
                    r["decisions"][card.decision] += 1
                    if outcome is None:
                        r["noFeedback"] += 1
                        continue
                    r[outcome] += 1
                    if outcome == "overridden":
                        if fb.override_code:
                            r["reasons"][(fb.override_system, fb.override_code,
                                          fb.override_display or fb.override_code)] += 1
                        else:
                            r["overriddenWithoutReason"] += 1
        rules = []
        for rule in sorted(per_rule, key=_rule_key):
            r = per_rule[rule]
            rules.append({
                "rule": rule,
                "shown": r["shown"],
                "accepted": r["accepted"],
                "overridden": r["overridden"],
                "noFeedback": r["noFeedback"],
                "overriddenWithoutReason": r["overriddenWithoutReason"],
                "decisions": dict(sorted(r["decisions"].items())),
                "overrideReasons": [
                    {"system": s, "code": c, "display": d, "count": n}
                    for (s, c, d), n in sorted(r["reasons"].items(), key=lambda kv: (-kv[1], kv[0][1]))
                ],
            })
        return {
            "totals": {
                "cards": totals["cards"],
                "accepted": totals["accepted"],
                "overridden": totals["overridden"],
                "noFeedback": totals["noFeedback"],
                "feedbackReceived": feedback_rows,
            },
            "rules": rules,
        }


def open_store(
    url: str,
    *,
    schema: str | None = None,
    migrate: bool = True,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout: float = 5.0,
) -> CardStore:
    """Open (and by default migrate to head) the store at a SQLAlchemy URL.

    `sqlite:////path/besponsa-cds.db` (the directory is created), `sqlite://` (memory),
    `postgresql+psycopg://user@host/db` (pool of `pool_size` + `max_overflow` connections per
    process). `schema` (PostgreSQL only) puts the tables in that schema, created if missing
    (tests use it to isolate runs).
    """
    u = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if u.get_backend_name() == "sqlite":
        db = u.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif u.get_backend_name() == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
                      pool_timeout=pool_timeout)
        kwargs["connect_args"] = {"connect_timeout": max(1, round(pool_timeout))}
        if schema:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
                raise ValueError("schema must be a lower-case SQL identifier")
            kwargs["connect_args"]["options"] = f"-csearch_path={schema}"
    engine = create_engine(u, **kwargs)
    if u.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if db and db != ":memory:" and not db.startswith("file:"):
                cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the card writer
            cur.close()
    if schema and u.get_backend_name() == "postgresql":
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    store = CardStore(engine)
    if migrate:
        for attempt in range(3):
            try:
                store.migrate()
                break
            except OperationalError:
                # Several workers opening a new SQLite file at once: one creates the tables, the
                # others see "already exists" or "locked"; they retry and find the schema at head.
                if attempt == 2 or u.get_backend_name() != "sqlite":
                    raise
                time.sleep(0.2 * (attempt + 1))
    return store


def open_configured_store(settings: Any, *, migrate: bool | None = None) -> CardStore:
    """The store every command uses (serve, report, purge, migrate): `settings.database_url` with
    the pool sized by settings; migrated when `migrate` (default: `settings.migrate_on_start`)."""
    return open_store(
        settings.database_url,
        migrate=settings.migrate_on_start if migrate is None else migrate,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
