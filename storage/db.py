"""The asyncpg pool and what every repository needs from it."""

from __future__ import annotations

import json
from typing import Any, Protocol

import asyncpg


class Queryable(Protocol):
    """What repositories call: an asyncpg Pool, Connection or pooled connection proxy.

    Passing a connection inside `async with conn.transaction()` lets a caller run several
    repository methods atomically.
    """

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any: ...


def affected_rows(command_tag: str) -> int:
    """Row count from a command tag such as 'UPDATE 3' or 'INSERT 0 5'."""
    return int(command_tag.rsplit(" ", 1)[-1])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Make json/jsonb columns arrive as Python objects (asyncpg's default is str).

    Repositories don't depend on it (they send JSON as text and models accept both), so
    a bare `asyncpg.connect()` works with them too.
    """
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _transactions_only(conn: asyncpg.Connection) -> None:
    """Nothing to reset: asyncpg has rolled back an open transaction already, and our
    statements keep no session state (settings are `SET LOCAL`, no LISTEN or cursors)."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, session_locks: bool = False
) -> asyncpg.Pool:
    """A pool whose connections decode JSONB into dicts/lists.

    A connection given back is not reset (asyncpg's default sends `RESET ALL`, `UNLISTEN`,
    `CLOSE ALL` and `pg_advisory_unlock_all` each time: a round trip per use, as many as
    the queries of a tap). A pool whose connections hold session advisory locks
    (`session_locks`) keeps the full reset, so a connection given back frees its locks.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=None if session_locks else _transactions_only,
        server_settings={"application_name": "leadpilot"},
    )
    assert pool is not None  # only None when awaited twice; keeps the return type exact
    return pool
