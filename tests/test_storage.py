"""Repositories and row-level security against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

from storage.activity_log import ActivityLogRepository
from storage.db import create_pool
from storage.deliveries import DeliveryLedger
from storage.fsm import create_lock_pool
from storage.leads import LeadRepository
from storage.models import DeliveryStatus, LeadStatus, Reminder, ReminderStatus, ReminderUpsert
from storage.reminders import ReminderRepository
from storage.users import UserRepository

A, B = 111, 222
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)

PLAN = [
    {"step_id": 1, "action_type": "email", "description": "Intro", "delay_days": 0},
    {"step_id": 2, "action_type": "call", "description": "Call", "delay_days": 3},
]


def step(lead_id: int, step_id: int, **kw: object) -> ReminderUpsert:
    data: dict[str, object] = {
        "lead_id": lead_id,
        "telegram_id": A,
        "plan_version": 1,
        "step_id": step_id,
        "action_type": "email",
        "description": f"step {step_id}",
        "draft_text": f"Hello {step_id}",
        "due_at": T0 + timedelta(days=step_id),
        "revision": 1,
    }
    data.update(kw)
    return ReminderUpsert.model_validate(data)


async def new_lead(pool: asyncpg.Pool, owner: int = A, name: str = "Ada") -> int:
    return (await LeadRepository(pool).create(owner, name)).id


# ---- leads ----


async def test_lead_create_get_and_ownership(pool: asyncpg.Pool) -> None:
    leads = LeadRepository(pool)
    lead = await leads.create(A, "Ada Lovelace", "Analytical Engines", "CTO", "met at a fair")
    assert lead.status == LeadStatus.ANALYZED
    assert (lead.prospect_company, lead.prospect_title) == ("Analytical Engines", "CTO")
    assert lead.plan_version == 1 and lead.engagement_plan is None
    assert await leads.get(lead.id) == lead
    assert await leads.get_owned(lead.id, A) == lead
    assert await leads.get_owned(lead.id, B) is None
    assert await leads.get(lead.id + 1000) is None


async def test_list_and_count_for_owner_page_newest_first(pool: asyncpg.Pool) -> None:
    leads = LeadRepository(pool)
    ids = [(await leads.create(A, f"lead {i}")).id for i in range(5)]
    await leads.create(B, "someone else's")
    assert await leads.count_for_owner(A) == 5
    assert await leads.count_for_owner(B) == 1
    assert await leads.count_for_owner(999) == 0
    first = await leads.list_for_owner(A, limit=2, offset=0)
    rest = await leads.list_for_owner(A, limit=10, offset=2)
    assert [lead.id for lead in first + rest] == ids[::-1]


async def test_set_status_returns_previous_and_checks_owner(pool: asyncpg.Pool) -> None:
    leads = LeadRepository(pool)
    lead = await leads.create(A, "Ada")
    change = await leads.set_status(lead.id, A, LeadStatus.REACHED_OUT)
    assert change is not None
    previous, updated = change
    assert previous == LeadStatus.ANALYZED
    assert updated.status == LeadStatus.REACHED_OUT
    assert updated.updated_at > lead.updated_at

    again = await leads.set_status(lead.id, A, LeadStatus.CLOSED_WON)
    assert again is not None and again.previous_status == LeadStatus.REACHED_OUT

    assert await leads.set_status(lead.id, B, LeadStatus.CLOSED_LOST) is None
    stored = await leads.get(lead.id)
    assert stored is not None and stored.status == LeadStatus.CLOSED_WON

    with pytest.raises(ValueError):
        await leads.set_status(lead.id, A, "won")  # type: ignore[arg-type]


async def test_engagement_plan_roundtrips_and_older_version_is_refused(
    pool: asyncpg.Pool, db_url: str
) -> None:
    leads = LeadRepository(pool)
    lead_id = await new_lead(pool)
    assert await leads.set_engagement_plan(lead_id, 1, PLAN)
    assert await leads.set_engagement_plan(lead_id, 1, PLAN)  # a retry rewrites
    newer = [{**PLAN[0], "description": "v2"}]
    assert await leads.set_engagement_plan(lead_id, 2, newer)
    assert not await leads.set_engagement_plan(lead_id, 1, PLAN)
    stored = await leads.get(lead_id)
    assert stored is not None
    assert (stored.plan_version, stored.engagement_plan) == (2, newer)

    # The pool's codec yields a list; a bare connection yields text, and models accept both.
    assert isinstance(await pool.fetchval("SELECT engagement_plan FROM lead_registry"), list)
    conn = await asyncpg.connect(db_url)
    try:
        assert isinstance(await conn.fetchval("SELECT engagement_plan FROM lead_registry"), str)
        bare = await LeadRepository(conn).get(lead_id)
        assert bare is not None and bare.engagement_plan == newer
        assert await LeadRepository(conn).set_engagement_plan(lead_id, 3, PLAN)
    finally:
        await conn.close()


async def test_deleting_a_lead_cascades(pool: asyncpg.Pool) -> None:
    lead_id = await new_lead(pool)
    await ReminderRepository(pool).upsert_steps([step(lead_id, 1)])
    await ActivityLogRepository(pool).add(lead_id, A, "plan_created", "x")
    await DeliveryLedger(pool).begin("k", A, lead_id)
    await pool.execute("DELETE FROM lead_registry WHERE id = $1", lead_id)
    for table in ("scheduled_reminders", "lead_activity_log", "telegram_deliveries"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0


# ---- reminders ----


async def test_upsert_steps_is_idempotent(pool: asyncpg.Pool) -> None:
    reminders = ReminderRepository(pool)
    lead_id = await new_lead(pool)
    rows = [step(lead_id, i) for i in (1, 2, 3)]
    assert await reminders.upsert_steps(rows) == 3
    first = await reminders.get_for_lead(lead_id)
    assert [r.step_id for r in first] == [1, 2, 3]
    assert first[0].draft_text == "Hello 1" and first[0].due_at == T0 + timedelta(days=1)
    assert first[0].status == ReminderStatus.PENDING and first[0].revision == 1

    await reminders.upsert_steps(rows)
    assert await reminders.get_for_lead(lead_id) == first  # even updated_at is unchanged
    assert await reminders.upsert_steps([]) == 0


async def test_upsert_steps_drops_stale_revisions(pool: asyncpg.Pool) -> None:
    reminders = ReminderRepository(pool)
    lead_id = await new_lead(pool)
    await reminders.upsert_steps([step(lead_id, 1, revision=5, status="sent", message_id=42)])

    stale = step(lead_id, 1, revision=4, status="pending", draft_text="old")
    assert await reminders.upsert_steps([stale]) == 0
    row = await reminders.get_by_lead_and_step(lead_id, 1, 1)
    assert row is not None
    assert (row.status, row.revision, row.draft_text) == (ReminderStatus.SENT, 5, "Hello 1")

    # A newer write wins, and a mirror that doesn't know the message id keeps the known one.
    newer = step(lead_id, 1, revision=6, status="completed", completed_at=T0, message_id=None)
    assert await reminders.upsert_steps([newer]) == 1
    row = await reminders.get_by_lead_and_step(lead_id, 1, 1)
    assert row is not None
    assert (row.status, row.revision, row.completed_at, row.message_id) == (
        ReminderStatus.COMPLETED,
        6,
        T0,
        42,
    )

    # Repeated keys in one batch collapse to the highest revision instead of failing.
    batch = [step(lead_id, 2, revision=9, draft_text="new"), step(lead_id, 2, revision=8)]
    assert await reminders.upsert_steps(batch) == 1
    row = await reminders.get_by_lead_and_step(lead_id, 2, 1)
    assert row is not None and row.draft_text == "new"


async def test_replacing_a_plan_closes_only_open_rows_of_older_versions(
    pool: asyncpg.Pool,
) -> None:
    """What the mirror activity does when a new plan version starts: the old plan's open
    steps are cancelled, answered ones keep their history, and a late write of the old
    plan (a retried activity) cannot reopen them."""
    reminders = ReminderRepository(pool)
    lead_id = await new_lead(pool)
    other = await new_lead(pool)
    await reminders.upsert_steps(
        [
            step(lead_id, 1, status="completed", revision=3),
            step(lead_id, 2, status="skipped", revision=3),
            step(lead_id, 3, status="sent", revision=3),
            step(lead_id, 4, revision=3),
            step(lead_id, 1, plan_version=2, revision=5),
            step(other, 1),
        ]
    )
    assert await reminders.close_older_versions(lead_id, 2, 5) == 2
    assert await reminders.close_older_versions(lead_id, 2, 5) == 0
    rows = await pool.fetch(
        "SELECT plan_version, step_id, status, revision FROM scheduled_reminders"
        " WHERE lead_id = $1 ORDER BY plan_version, step_id",
        lead_id,
    )
    assert [tuple(r) for r in rows] == [
        (1, 1, "completed", 3),
        (1, 2, "skipped", 3),
        (1, 3, "cancelled", 5),
        (1, 4, "cancelled", 5),
        (2, 1, "pending", 5),
    ]
    assert await reminders.upsert_steps([step(lead_id, 4, revision=4)]) == 0
    untouched = await reminders.get_by_lead_and_step(other, 1, 1)
    assert untouched is not None and untouched.status == ReminderStatus.PENDING


async def test_current_plan_version_reads(pool: asyncpg.Pool) -> None:
    reminders = ReminderRepository(pool)
    lead_id = await new_lead(pool)
    other = await new_lead(pool)
    await reminders.upsert_steps(
        [step(lead_id, i, plan_version=1) for i in (1, 2, 3)]
        + [step(lead_id, i, plan_version=2, description=f"v2 {i}") for i in (2, 1)]
        + [step(other, 1)]
    )
    current = await reminders.get_for_lead(lead_id)
    assert [(r.plan_version, r.step_id) for r in current] == [(2, 1), (2, 2)]

    row = await reminders.get_by_lead_and_step(lead_id, 1, 2)
    assert row is not None and (row.plan_version, row.description) == (2, "v2 1")
    assert await reminders.get_by_lead_and_step(lead_id, 3, 2) is None
    old = await reminders.get_by_lead_and_step(lead_id, 3, 1)
    assert old is not None and old.plan_version == 1
    assert await reminders.get_for_lead(lead_id + 1000) == []
    assert len(await reminders.get_for_lead(other)) == 1


async def test_repositories_share_a_transaction(pool: asyncpg.Pool) -> None:
    lead_id = await new_lead(pool)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await ReminderRepository(conn).upsert_steps([step(lead_id, 1)])
        await ActivityLogRepository(conn).add(lead_id, A, "plan_created", "x")
        await tx.rollback()
    assert await ReminderRepository(pool).get_for_lead(lead_id) == []
    assert await ActivityLogRepository(pool).for_lead(lead_id) == []


# ---- activity log ----


async def test_activity_log_dedupes_by_key(pool: asyncpg.Pool) -> None:
    log = ActivityLogRepository(pool)
    lead_id = await new_lead(pool)
    assert await log.add(lead_id, A, "plan_created", "Plan created", {"steps": 5}, "k1")
    assert not await log.add(lead_id, A, "plan_created", "again", {"steps": 6}, "k1")
    assert await log.add(lead_id, A, "status_change", "one")
    assert await log.add(lead_id, A, "status_change", "two")

    entries = await log.for_lead(lead_id)
    assert [e.content for e in entries] == ["two", "one", "Plan created"]
    assert entries[2].metadata == {"steps": 5} and entries[2].dedupe_key == "k1"
    assert entries[0].metadata == {}
    assert [e.content for e in await log.for_lead(lead_id, limit=1)] == ["two"]


# ---- users ----


async def test_users_upsert_keeps_settings_and_updates_schedule(pool: asyncpg.Pool) -> None:
    users = UserRepository(pool)
    user = await users.upsert(A, "Ada", None, "ada")
    assert (user.timezone, user.window_start, user.window_end, user.workdays_only) == (
        "UTC",
        time(9),
        time(20),
        True,
    )
    assert await users.get(A) == user
    assert await users.get(B) is None

    changed = await users.update_schedule(A, timezone="Europe/Berlin", window_start=time(8, 30))
    assert changed is not None
    assert (changed.timezone, changed.window_start, changed.window_end) == (
        "Europe/Berlin",
        time(8, 30),
        time(20),
    )
    changed = await users.update_schedule(A, workdays_only=False)
    assert changed is not None and not changed.workdays_only
    assert changed.timezone == "Europe/Berlin"

    again = await users.upsert(A, "Ada", "Lovelace", "countess")
    assert (again.last_name, again.username, again.timezone, again.workdays_only) == (
        "Lovelace",
        "countess",
        "Europe/Berlin",
        False,
    )
    assert await users.update_schedule(B, timezone="UTC") is None
    with pytest.raises(asyncpg.CheckViolationError):
        await users.update_schedule(A, window_end=time(8))


async def test_every_update_registers_its_user_without_rewriting_an_unchanged_row(
    pool: asyncpg.Pool, db_url: str
) -> None:
    users = UserRepository(pool)
    first = await users.upsert(A, "Ada", None, "ada")
    version = "SELECT xmin::text FROM users WHERE telegram_id = $1"
    before = await pool.fetchval(version, A)
    assert await users.upsert(A, "Ada", None, "ada") == first
    assert await pool.fetchval(version, A) == before  # no new row version, no lock taken
    renamed = await users.upsert(A, "Ada", "Lovelace", "ada")
    assert renamed.last_name == "Lovelace" and await pool.fetchval(version, A) != before

    # B's first two updates at once: the second statement started before the first
    # committed, so it neither writes nor sees the row, and reads it afterwards.
    other = await asyncpg.connect(db_url)
    try:
        async with other.transaction():
            await UserRepository(other).upsert(B, "Bob", None, None)
            second = asyncio.create_task(users.upsert(B, "Bob", None, None))
            await asyncio.sleep(0.3)
            assert not second.done()  # waits for the first insert of B
        assert (await second).first_name == "Bob"
    finally:
        await other.close()


async def test_a_connection_given_back_is_not_reset_unless_it_holds_session_locks(
    db_url: str,
) -> None:
    """The app's pools skip asyncpg's reset round trip (RESET ALL, UNLISTEN, …) on every
    release but still roll back a transaction left open; the chat-lock pool frees its
    advisory locks when a connection goes back."""
    sent: list[str] = []
    app = await create_pool(db_url, max_size=1)
    locks = await create_lock_pool(db_url)
    try:
        conn = await app.acquire()
        conn.add_query_logger(lambda record: sent.append(record.query))
        left_open = conn.transaction()
        await left_open.start()
        await conn.execute("INSERT INTO users (telegram_id) VALUES ($1)", 999)
        await app.release(conn)
        assert not any("RESET ALL" in q for q in sent), sent
        assert "ROLLBACK" in sent
        assert await app.fetchval("SELECT count(*) FROM users WHERE telegram_id = 999") == 0

        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
        conn = await locks.acquire()
        await conn.execute("SELECT pg_advisory_lock(4242)")
        assert await app.fetchval(held) == 1
        await locks.release(conn)
        assert await app.fetchval(held) == 0
    finally:
        await app.close()
        await locks.close()


async def test_users_pause(pool: asyncpg.Pool) -> None:
    users = UserRepository(pool)
    await users.upsert(A, "Ada", None, None)
    paused = await users.set_paused_until(A, T0)
    assert paused is not None and paused.paused_until == T0
    resumed = await users.set_paused_until(A, None)
    assert resumed is not None and resumed.paused_until is None
    assert await users.set_paused_until(B, T0) is None


# ---- delivery ledger ----


async def test_delivery_ledger(pool: asyncpg.Pool) -> None:
    ledger = DeliveryLedger(pool)
    lead_id = await new_lead(pool)
    first = await ledger.begin("lead-1:v1:s1:r0:n0", A, lead_id)
    assert (first.status, first.attempts, first.message_id) == (DeliveryStatus.SENDING, 1, None)
    assert not first.already_sent
    second = await ledger.begin("lead-1:v1:s1:r0:n0", A, lead_id)
    assert (second.id, second.attempts, second.status) == (first.id, 2, DeliveryStatus.SENDING)

    done = await ledger.complete("lead-1:v1:s1:r0:n0", 555)
    assert done is not None and done.already_sent and done.message_id == 555
    retry = await ledger.begin("lead-1:v1:s1:r0:n0", A, lead_id)
    assert retry.already_sent and retry.message_id == 555 and retry.attempts == 3
    late = await ledger.complete("lead-1:v1:s1:r0:n0", 556)
    assert late is not None and late.message_id == 555

    notice = await ledger.begin("notice:welcome", B)
    assert notice.lead_id is None
    assert await ledger.get("notice:welcome") == notice
    assert await ledger.complete("never-begun", 1) is None
    assert await ledger.get("never-begun") is None


# ---- row-level security ----


@asynccontextmanager
async def as_role(
    pool: asyncpg.Pool, role: str, claims: dict[str, object] | None
) -> AsyncIterator[asyncpg.Connection]:
    """A connection acting as `role` (with JWT claims) inside a transaction rolled back after."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(f"SET LOCAL ROLE {role}")
            if claims is not None:
                await conn.execute(
                    "SELECT set_config('request.jwt.claims', $1, true)", json.dumps(claims)
                )
            yield conn
        finally:
            await tx.rollback()


async def _two_owners(pool: asyncpg.Pool) -> tuple[int, int]:
    lead_a, lead_b = await new_lead(pool, A, "A's"), await new_lead(pool, B, "B's")
    await ReminderRepository(pool).upsert_steps([step(lead_a, 1), step(lead_b, 1, telegram_id=B)])
    log = ActivityLogRepository(pool)
    await log.add(lead_a, A, "plan_created", "a")
    await log.add(lead_b, B, "plan_created", "b")
    await UserRepository(pool).upsert(A, "A", None, None)
    await UserRepository(pool).upsert(B, "B", None, None)
    await DeliveryLedger(pool).begin("a", A, lead_a)
    await DeliveryLedger(pool).begin("b", B, lead_b)
    return lead_a, lead_b


VISIBLE_OWNERS = {
    table: f"SELECT array_agg(DISTINCT telegram_id) FROM {table}"
    for table in (
        "lead_registry",
        "scheduled_reminders",
        "lead_activity_log",
        "users",
        "telegram_deliveries",
    )
}


async def test_rls_authenticated_sees_and_updates_only_own_rows(pool: asyncpg.Pool) -> None:
    lead_a, lead_b = await _two_owners(pool)
    async with as_role(pool, "authenticated", {"telegram_id": str(A)}) as conn:
        for table, query in VISIBLE_OWNERS.items():
            assert await conn.fetchval(query) == [A], table
        assert await LeadRepository(conn).get(lead_b) is None

        # Column grants (test_least_privilege.py) allow only the lead's descriptive text.
        assert (
            await conn.execute(
                "UPDATE lead_registry SET prospect_company = 'x' WHERE id = $1", lead_b
            )
            == "UPDATE 0"
        )
        assert (
            await conn.execute("UPDATE users SET timezone = 'Asia/Tokyo' WHERE telegram_id = $1", B)
            == "UPDATE 0"
        )
        assert (
            await conn.execute(
                "UPDATE lead_registry SET prospect_company = 'x' WHERE id = $1", lead_a
            )
            == "UPDATE 1"
        )
        assert (
            await conn.execute(
                "UPDATE users SET timezone = 'Europe/Paris' WHERE telegram_id = $1", A
            )
            == "UPDATE 1"
        )

    # A numeric claim works the same as a string one.
    async with as_role(pool, "authenticated", {"telegram_id": B}) as conn:
        assert await conn.fetchval(VISIBLE_OWNERS["lead_registry"]) == [B]

    b_lead = await LeadRepository(pool).get(lead_b)
    assert b_lead is not None and b_lead.status == LeadStatus.ANALYZED
    b_user = await UserRepository(pool).get(B)
    assert b_user is not None and b_user.timezone == "UTC"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE lead_registry SET telegram_id = {b} WHERE id = {lead_a}",
        "UPDATE scheduled_reminders SET telegram_id = {b} WHERE lead_id = {lead_a}",
        "UPDATE scheduled_reminders SET lead_id = {lead_b} WHERE lead_id = {lead_a}",
        "UPDATE users SET telegram_id = {b} WHERE telegram_id = {a}",
        "UPDATE lead_activity_log SET content = 'x' WHERE lead_id = {lead_a}",
        "UPDATE telegram_deliveries SET message_id = 1 WHERE lead_id = {lead_a}",
        "INSERT INTO lead_registry (telegram_id, prospect_name) VALUES ({a}, 'new')",
        "DELETE FROM lead_registry WHERE id = {lead_a}",
    ],
)
async def test_rls_authenticated_cannot_hand_rows_away_or_write_elsewhere(
    pool: asyncpg.Pool, statement: str
) -> None:
    lead_a, lead_b = await _two_owners(pool)
    sql = statement.format(a=A, b=B, lead_a=lead_a, lead_b=lead_b)
    async with as_role(pool, "authenticated", {"telegram_id": str(A)}) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)


async def test_rls_without_claims_sees_nothing(pool: asyncpg.Pool) -> None:
    await _two_owners(pool)
    async with pool.acquire() as conn:
        for claims in ({"telegram_id": str(A)}, None, {}, {"telegram_id": ""}):
            # After a transaction-local set_config the setting reads '' (not NULL) on this
            # connection; the policies must treat that as "no claim", not raise.
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE authenticated")
                if claims is not None:
                    await conn.execute(
                        "SELECT set_config('request.jwt.claims', $1, true)", json.dumps(claims)
                    )
                expected = [A] if claims and claims.get("telegram_id") else None
                for table, query in VISIBLE_OWNERS.items():
                    assert await conn.fetchval(query) == expected, (table, claims)


async def test_rls_service_role_sees_and_writes_everything(pool: asyncpg.Pool) -> None:
    lead_a, _ = await _two_owners(pool)
    async with as_role(pool, "leadpilot_service", None) as conn:
        for table, query in VISIBLE_OWNERS.items():
            assert sorted(await conn.fetchval(query)) == [A, B], table
        lead = await LeadRepository(conn).create(B, "via service role")
        assert lead.telegram_id == B
        assert await ReminderRepository(conn).close_older_versions(lead_a, 2, 9) == 1


async def test_fresh_pool_decodes_jsonb(db_url: str) -> None:
    pool = await create_pool(db_url, min_size=1, max_size=2)
    try:
        lead_id = await new_lead(pool)
        await ActivityLogRepository(pool).add(lead_id, A, "t", None, {"n": 1, "s": "x"})
        assert await pool.fetchval("SELECT metadata FROM lead_activity_log") == {"n": 1, "s": "x"}
    finally:
        await pool.close()


def test_reminder_model_open_flag() -> None:
    now = datetime.now(UTC)
    base = {"id": 1, "lead_id": 1, "telegram_id": A, "step_id": 1}
    row = Reminder.model_validate({**base, "created_at": now, "updated_at": now})
    assert row.is_open
    assert not row.model_copy(update={"status": ReminderStatus.SKIPPED}).is_open
