"""migrations/003_least_privilege.sql: column-level grants and FORCE ROW LEVEL SECURITY.

Every check goes through the Mini App's own connection helper (webapp.db.as_user), i.e.
exactly what a signed-in Mini App user's SQL runs as.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from storage.activity_log import ActivityLogRepository
from storage.db import create_pool
from storage.deliveries import DeliveryLedger
from storage.leads import LeadRepository
from storage.migrate import apply_migrations
from storage.models import LeadStatus, ReminderUpsert
from storage.reminders import ReminderRepository
from storage.users import UserRepository
from webapp.db import as_user

A, B = 5101, 5202
T0 = datetime(2030, 1, 7, 9, tzinfo=UTC)
TABLES = (
    "lead_registry",
    "scheduled_reminders",
    "lead_activity_log",
    "users",
    "telegram_deliveries",
)


def _row(lead_id: int, owner: int, step_id: int) -> ReminderUpsert:
    return ReminderUpsert(
        lead_id=lead_id,
        telegram_id=owner,
        plan_version=1,
        step_id=step_id,
        action_type="email",
        description=f"step {step_id}",
        draft_text="Hello",
        due_at=T0 + timedelta(days=step_id),
        revision=3,
    )


async def _two_owners(db: asyncpg.Pool) -> tuple[int, int]:
    """A and B each with a lead, two plan rows, a log line, a user row and a delivery."""
    leads = LeadRepository(db)
    ids = []
    for owner in (A, B):
        lead = await leads.create(owner, f"lead of {owner}", "Co")
        ids.append(lead.id)
        await ReminderRepository(db).upsert_steps(
            [_row(lead.id, owner, 1), _row(lead.id, owner, 2)]
        )
        await ActivityLogRepository(db).add(lead.id, owner, "plan_created", "x")
        await UserRepository(db).upsert(owner, str(owner), None, None)
        await DeliveryLedger(db).begin(f"d-{owner}", owner, lead.id)
    return ids[0], ids[1]


async def _snapshot(db: asyncpg.Pool) -> list[list[asyncpg.Record]]:
    return [await db.fetch(f"SELECT * FROM {t} ORDER BY 1") for t in TABLES]


# What a user might try to change that plan state depends on (issue 8, point 5).
FORBIDDEN = [
    "UPDATE scheduled_reminders SET revision = 9000000000000000000 WHERE lead_id = {lead}",
    "UPDATE scheduled_reminders SET plan_version = 2147483647 WHERE lead_id = {lead}",
    "UPDATE scheduled_reminders SET status = 'completed' WHERE lead_id = {lead}",
    "UPDATE scheduled_reminders SET due_at = now() WHERE lead_id = {lead}",
    "UPDATE scheduled_reminders SET id = id + 1000 WHERE lead_id = {lead}",
    "UPDATE scheduled_reminders SET reminder_count = 0 WHERE lead_id = {lead}",
    "UPDATE lead_registry SET plan_version = 2147483647 WHERE id = {lead}",
    "UPDATE lead_registry SET status = 'closed_won' WHERE id = {lead}",
    "UPDATE lead_registry SET id = nextval('lead_registry_id_seq') WHERE id = {lead}",
    "UPDATE lead_registry SET engagement_plan = '[]' WHERE id = {lead}",
    "UPDATE users SET telegram_id = 1 WHERE telegram_id = {owner}",
    "UPDATE users SET first_name = 'x' WHERE telegram_id = {owner}",
    "UPDATE lead_activity_log SET content = 'x' WHERE lead_id = {lead}",
    "UPDATE telegram_deliveries SET status = 'sent' WHERE lead_id = {lead}",
    "INSERT INTO scheduled_reminders (lead_id, telegram_id, step_id) VALUES ({lead}, {owner}, 9)",
    "DELETE FROM scheduled_reminders WHERE lead_id = {lead}",
    "DELETE FROM users WHERE telegram_id = {owner}",
]


@pytest.mark.parametrize("statement", FORBIDDEN)
@pytest.mark.parametrize("whose", ["own", "other"])
async def test_a_cannot_change_plan_state_of_any_row(
    pool: asyncpg.Pool, statement: str, whose: str
) -> None:
    lead_a, lead_b = await _two_owners(pool)
    before = await _snapshot(pool)
    lead, owner = (lead_a, A) if whose == "own" else (lead_b, B)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(pool, A) as conn:
            await conn.execute(statement.format(lead=lead, owner=owner))
    assert await _snapshot(pool) == before


async def test_a_changes_only_own_settings_and_lead_text(pool: asyncpg.Pool) -> None:
    lead_a, lead_b = await _two_owners(pool)
    async with as_user(pool, A) as conn:
        changed = await conn.execute(
            "UPDATE users SET timezone = 'Europe/Berlin', workdays_only = false,"
            " window_start = '08:00', window_end = '18:00', paused_until = now()"
        )
        assert changed == "UPDATE 1"  # no WHERE at all: RLS narrows it to A's row
        assert await conn.execute("UPDATE lead_registry SET prospect_company = 'New'") == (
            "UPDATE 1"
        )
    a, b = await UserRepository(pool).get(A), await UserRepository(pool).get(B)
    assert a is not None and a.timezone == "Europe/Berlin" and not a.workdays_only
    assert b is not None and b.timezone == "UTC" and b.workdays_only and b.paused_until is None
    lead = await LeadRepository(pool).get(lead_b)
    assert lead is not None and lead.prospect_company == "Co"
    lead = await LeadRepository(pool).get(lead_a)
    assert lead is not None and lead.prospect_company == "New"


async def test_a_reads_none_of_bs_rows_in_any_table(pool: asyncpg.Pool) -> None:
    _, lead_b = await _two_owners(pool)
    async with as_user(pool, A) as conn:
        for table in TABLES:
            owners = await conn.fetchval(f"SELECT array_agg(DISTINCT telegram_id) FROM {table}")
            assert owners == [A], table
        # Asking for B's rows by id finds nothing, exactly like a missing id.
        assert await conn.fetchrow("SELECT * FROM lead_registry WHERE id = $1", lead_b) is None
        assert (
            await conn.fetch("SELECT * FROM scheduled_reminders WHERE lead_id = $1", lead_b) == []
        )
        assert await conn.fetch("SELECT * FROM lead_activity_log WHERE lead_id = $1", lead_b) == []
        assert await conn.fetchrow("SELECT * FROM users WHERE telegram_id = $1", B) is None
        assert await conn.fetchval("SELECT count(*) FROM scheduled_reminders") == 2


async def test_role_and_claims_end_with_the_transaction(pool: asyncpg.Pool) -> None:
    """A pooled connection goes back to the service's view after a Mini App request."""
    await _two_owners(pool)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE authenticated")
            await conn.execute(
                "SELECT set_config('request.jwt.claims', $1, true)", '{"telegram_id": "5101"}'
            )
            assert await conn.fetchval("SELECT current_user") == "authenticated"
        assert await conn.fetchval("SELECT current_user") != "authenticated"
        assert await conn.fetchval("SELECT count(DISTINCT telegram_id) FROM lead_registry") == 2


def _as_login(uri: str, user: str, database: str) -> str:
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}", path="/" + database))


@pytest.fixture
async def owner_db(pg_server_uri: str) -> AsyncIterator[tuple[str, str]]:
    """A database owned and migrated by a non-superuser login role, as in production.

    The administrator's one step: make the owner a member of the two roles (roles are
    cluster-wide, so on a shared server they usually exist already).
    """
    role = "lp_owner_" + uuid.uuid4().hex[:8]
    name = "o_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CREATEROLE')
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
        for existing in ("authenticated", "leadpilot_service"):
            if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", existing):
                await admin.execute(f'GRANT {existing} TO "{role}" WITH ADMIN OPTION')
    finally:
        await admin.close()
    url = _as_login(pg_server_uri, role, name)
    await apply_migrations(url)
    yield url, role
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


async def test_forced_rls_keeps_the_owner_working_as_the_service(
    owner_db: tuple[str, str],
) -> None:
    url, role = owner_db
    db = await create_pool(url, min_size=1, max_size=2)
    try:
        assert await db.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role) is False
        forced = dict(
            await db.fetch(
                "SELECT relname, relforcerowsecurity FROM pg_class WHERE relname = ANY($1)",
                list(TABLES),
            )
        )
        assert forced == dict.fromkeys(TABLES, True)

        # The bot's and worker's repositories, as the (forced) owner: every user's rows.
        lead_a, lead_b = await _two_owners(db)
        for table in TABLES:
            owners = await db.fetchval(f"SELECT array_agg(DISTINCT telegram_id) FROM {table}")
            assert sorted(owners) == [A, B], table
        assert await ReminderRepository(db).close_older_versions(lead_b, 2, 4) == 2
        assert await LeadRepository(db).set_status(lead_b, B, LeadStatus.CLOSED_LOST) is not None

        # And the Mini App on the same pool still sees only its user's rows.
        async with as_user(db, A) as conn:
            for table in TABLES:
                owners = await conn.fetchval(f"SELECT array_agg(DISTINCT telegram_id) FROM {table}")
                assert owners == [A], table
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with as_user(db, A) as conn:
                await conn.execute(
                    "UPDATE scheduled_reminders SET revision = 0 WHERE lead_id = $1", lead_a
                )
    finally:
        await db.close()
