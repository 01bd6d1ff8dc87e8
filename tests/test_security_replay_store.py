"""The jti replay store is the database: shared by every store (worker, replica) on it, SQLite file
and PostgreSQL (when BESPONSA_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from app.http.app import create_app
from app.storage import CardStore, open_store
from app.storage.models import used_token_ids
from tests.security_support import bearer, ehr_entry, private_key, token
from tests.test_security_tokens import assert_bare_401, jwt_settings

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
PG_URL = os.environ.get("BESPONSA_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def open_shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CardStore]]:
    """Opens a new store (own engine and pool, as another worker would) on one shared database."""
    opened: list[CardStore] = []
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path}/shared.db", None
    else:
        if not PG_URL:
            pytest.skip("BESPONSA_TEST_POSTGRES_URL is not set")
        url, schema = PG_URL, f"test_jti_{uuid.uuid4().hex[:12]}"

    def _open() -> CardStore:
        store = open_store(url, schema=schema)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
    if schema:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_a_jti_is_accepted_once_across_stores(open_shared: Callable[[], CardStore]) -> None:
    a, b = open_shared(), open_shared()
    later = NOW + timedelta(minutes=5)
    assert a.remember_token_id("https://ehr", "j1", later, NOW) is True
    assert b.remember_token_id("https://ehr", "j1", later, NOW) is False
    assert a.remember_token_id("https://ehr", "j1", later, NOW) is False
    assert b.remember_token_id("https://other-ehr", "j1", later, NOW) is True  # per issuer


def test_an_expired_record_no_longer_blocks_and_is_purged(open_shared: Callable[[], CardStore]) -> None:
    store = open_shared()
    assert store.remember_token_id("https://ehr", "old", NOW + timedelta(minutes=5), NOW)
    assert store.remember_token_id("https://ehr", "other", NOW + timedelta(minutes=5), NOW)
    after = NOW + timedelta(minutes=6)
    assert store.remember_token_id("https://ehr", "old", after + timedelta(minutes=5), after) is True
    store._purged_at = float("-inf")  # next call purges every expired row
    store.remember_token_id("https://ehr", "new", after + timedelta(minutes=5), after)
    with store.engine.connect() as conn:
        rows = {r.jti for r in conn.execute(select(used_token_ids.c.jti))}
    assert rows == {"old", "new"}


def test_concurrent_uses_of_one_jti_admit_exactly_one(open_shared: Callable[[], CardStore]) -> None:
    stores = [open_shared(), open_shared()]
    later = NOW + timedelta(minutes=5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: stores[n % 2].remember_token_id("https://ehr", "race", later, NOW), range(16)))
    assert results.count(True) == 1
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(used_token_ids)).scalar_one() == 1


def test_two_app_instances_on_one_database_refuse_a_replay(open_shared: Callable[[], CardStore], tmp_path: Path) -> None:
    settings = jwt_settings(tmp_path, [ehr_entry()])
    apps = [create_app(settings), create_app(settings)]
    for app in apps:
        app.state.store = open_shared()  # each instance its own engine on the shared database
    key = private_key("ec384")
    tok = token(key, "ES384", "ec1")
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        assert first.get("/cds-services", headers=bearer(tok)).status_code == 200
        assert_bare_401(second.get("/cds-services", headers=bearer(tok)))
