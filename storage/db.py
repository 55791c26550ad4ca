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


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode JSONB into dicts/lists."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        server_settings={"application_name": "leadpilot"},
    )
    assert pool is not None  # only None when awaited twice; keeps the return type exact
    return pool
