"""scheduled_reminders: the per-step mirror of each lead's plan.

The plan workflow is the only writer: its mirror and send activities write whole plans
(`upsert_steps`, `close_older_versions`), ordered by the plan's revision, so a retried
or reordered write is dropped. Readers that show a plan (bot lists, Mini App, doctor)
have their own queries (storage/lead_views.py, webapp/queries.py, ops/doctor.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.db import Queryable, affected_rows
from storage.models import Reminder, ReminderUpsert

_COLUMNS = (
    "lead_id, telegram_id, plan_version, step_id, action_type, description, draft_text, "
    "due_at, status, snooze_count, reminder_count, last_reminded_at, completed_at, "
    "message_id, revision"
)
_COLUMN_NAMES = [name.strip() for name in _COLUMNS.split(",")]

# A write with a lower revision than the stored row is stale (a retried or reordered
# mirror call) and is dropped; equal revisions rewrite the same values, so a retry is a
# no-op. A mirror that doesn't know the Telegram message id never erases a known one.
_UPSERT_STEPS = f"""
INSERT INTO scheduled_reminders AS r ({_COLUMNS})
SELECT * FROM unnest(
    $1::bigint[], $2::bigint[], $3::int[], $4::int[], $5::text[], $6::text[], $7::text[],
    $8::timestamptz[], $9::text[], $10::int[], $11::int[], $12::timestamptz[],
    $13::timestamptz[], $14::bigint[], $15::bigint[])
ON CONFLICT (lead_id, plan_version, step_id) DO UPDATE SET
    telegram_id = EXCLUDED.telegram_id,
    action_type = EXCLUDED.action_type,
    description = EXCLUDED.description,
    draft_text = EXCLUDED.draft_text,
    due_at = EXCLUDED.due_at,
    status = EXCLUDED.status,
    snooze_count = EXCLUDED.snooze_count,
    reminder_count = EXCLUDED.reminder_count,
    last_reminded_at = EXCLUDED.last_reminded_at,
    completed_at = EXCLUDED.completed_at,
    message_id = COALESCE(EXCLUDED.message_id, r.message_id),
    revision = EXCLUDED.revision
WHERE r.revision <= EXCLUDED.revision
"""

_CURRENT_VERSION = "(SELECT max(plan_version) FROM scheduled_reminders WHERE lead_id = $1)"


class ReminderRepository:
    """Plan steps of all leads; pass a pool, or a connection to share its transaction."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def upsert_steps(self, rows: Sequence[ReminderUpsert]) -> int:
        """Write many steps in one statement; returns how many rows were written.
        Called by activities/mirror.py and the send activity after a reminder.

        Rows repeating a key collapse to the one with the highest revision (the last of
        equals), since one INSERT may not touch a row twice.
        """
        latest: dict[tuple[int, int, int], ReminderUpsert] = {}
        for row in rows:
            key = (row.lead_id, row.plan_version, row.step_id)
            if key not in latest or latest[key].revision <= row.revision:
                latest[key] = row
        if not latest:
            return 0
        items = list(latest.values())
        # One array per column, in _COLUMNS order (the statement's $1 … $15).
        arrays = [[getattr(r, column) for r in items] for column in _COLUMN_NAMES]
        return affected_rows(await self._db.execute(_UPSERT_STEPS, *arrays))

    async def close_older_versions(self, lead_id: int, plan_version: int, revision: int) -> int:
        """Cancel the open rows of the lead's replaced plans (the plan state no longer holds
        them); stamped with the plan's revision so a late write of an old plan is dropped.
        Called by activities/mirror.py."""
        status = await self._db.execute(
            """
            UPDATE scheduled_reminders SET status = 'cancelled',
                revision = GREATEST(revision, $3)
            WHERE lead_id = $1 AND plan_version < $2 AND status IN ('pending', 'sent')
            """,
            lead_id,
            plan_version,
            revision,
        )
        return affected_rows(status)

    async def get_for_lead(self, lead_id: int) -> list[Reminder]:
        """Steps of the lead's current (highest) plan version, in step order.

        No production caller: the tests' view of the mirror (the bot reads storage/lead_views)."""
        rows = await self._db.fetch(
            f"""
            SELECT * FROM scheduled_reminders
            WHERE lead_id = $1 AND plan_version = {_CURRENT_VERSION}
            ORDER BY step_id
            """,
            lead_id,
        )
        return [Reminder.from_record(r) for r in rows]

    async def get_by_lead_and_step(
        self, lead_id: int, step_id: int, plan_version: int
    ) -> Reminder | None:
        """One step of one plan version; the bot's 📄 Full draft reads the draft here."""
        row = await self._db.fetchrow(
            """
            SELECT * FROM scheduled_reminders
            WHERE lead_id = $1 AND step_id = $2 AND plan_version = $3
            """,
            lead_id,
            step_id,
            plan_version,
        )
        return None if row is None else Reminder.from_record(row)
