"""Every Mini App read runs as the signed-in user, under row-level security.

Why: ownership must be enforced by the database, not only by a WHERE clause. Each
request's queries run in one transaction that switches to role `authenticated` and sets
`request.jwt.claims` locally (the PostgREST/Supabase convention the RLS policies of
migrations/002_rls.sql read), so a wrong or missing owner filter still returns only the
caller's rows. Both settings are transaction-local (`SET LOCAL`, `set_config(…, true)`):
the pooled connection goes back to its own role when the transaction ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ROLE = "authenticated"


@asynccontextmanager
async def as_user(pool: asyncpg.Pool, telegram_id: int) -> AsyncIterator[asyncpg.Connection]:
    """A connection acting as `telegram_id` inside a transaction (committed on success)."""
    claims = json.dumps({"role": ROLE, "telegram_id": str(telegram_id)})
    async with pool.acquire() as conn, conn.transaction():
        # One round trip: role, claims, and custom plans. The Mini App's queries take
        # optional filters ($n IS NULL OR …); a generic plan (PostgreSQL's choice after
        # five runs of a prepared statement) can't prune them and took seconds, not ms.
        await conn.execute(
            f"SET LOCAL ROLE {ROLE};"
            " SET LOCAL plan_cache_mode = force_custom_plan;"
            f" SELECT set_config('request.jwt.claims', {_literal(claims)}, true)"
        )
        yield conn


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings: only quotes need doubling)."""
    return "'" + text.replace("'", "''") + "'"
