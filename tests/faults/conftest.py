"""Fixtures of the fault tests: a PostgreSQL of their own that they may stop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.faults.harness import StoppablePostgres


@pytest.fixture(scope="session")
def stoppable_pg() -> Iterator[StoppablePostgres]:
    pg = StoppablePostgres()
    yield pg
    pg.cleanup()


@pytest.fixture
async def fault_db_url(stoppable_pg: StoppablePostgres) -> AsyncIterator[str]:
    """A fresh, migrated database on the stoppable server."""
    from storage.migrate import apply_migrations

    name = "f_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(stoppable_pg.uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = stoppable_pg.database_uri(name)
    await apply_migrations(url)
    yield url
    stoppable_pg.start()  # a failed test may have left it stopped
    admin = await asyncpg.connect(stoppable_pg.uri)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def fault_pool(fault_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    from storage.db import create_pool

    pool = await create_pool(fault_db_url)
    yield pool
    await pool.close()
