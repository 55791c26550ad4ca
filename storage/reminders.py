"""scheduled_reminders: the per-step mirror of each lead's plan.

Every method is one SQL statement, so a status change can't interleave with another
writer, and the ones a retried activity calls are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.db import Queryable, affected_rows
from storage.models import Reminder, ReminderStatus, ReminderUpsert

_COLUMNS = (
    "lead_id, telegram_id, plan_version, step_id, action_type, description, draft_text, "
    "due_at, status, snooze_count, reminder_count, last_reminded_at, completed_at, "
    "message_id, revision"
)

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
        status = await self._db.execute(
            _UPSERT_STEPS,
            [r.lead_id for r in items],
            [r.telegram_id for r in items],
            [r.plan_version for r in items],
            [r.step_id for r in items],
            [r.action_type for r in items],
            [r.description for r in items],
            [r.draft_text for r in items],
            [r.due_at for r in items],
            [r.status.value for r in items],
            [r.snooze_count for r in items],
            [r.reminder_count for r in items],
            [r.last_reminded_at for r in items],
            [r.completed_at for r in items],
            [r.message_id for r in items],
            [r.revision for r in items],
        )
        return affected_rows(status)

    async def create(
        self,
        *,
        lead_id: int,
        telegram_id: int,
        step_id: int,
        due_at: datetime | None = None,
        plan_version: int = 1,
        action_type: str | None = None,
        description: str | None = None,
        draft_text: str | None = None,
    ) -> Reminder:
        """Insert one pending step, or return the existing row for that key unchanged.

        The no-op DO UPDATE is what makes RETURNING yield the existing row; the trigger
        leaves updated_at alone because nothing changed.
        """
        row = await self._db.fetchrow(
            """
            INSERT INTO scheduled_reminders AS r
                (lead_id, telegram_id, plan_version, step_id, due_at,
                 action_type, description, draft_text)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (lead_id, plan_version, step_id) DO UPDATE SET step_id = r.step_id
            RETURNING *
            """,
            lead_id,
            telegram_id,
            plan_version,
            step_id,
            due_at,
            action_type,
            description,
            draft_text,
        )
        return Reminder.from_record(row)

    async def get_due_reminders(self, now: datetime, limit: int = 100) -> list[Reminder]:
        """Open steps whose time has come, oldest first (served by the partial index)."""
        rows = await self._db.fetch(
            """
            SELECT * FROM scheduled_reminders
            WHERE status IN ('pending', 'sent') AND due_at <= $1
            ORDER BY due_at, id
            LIMIT $2
            """,
            now,
            limit,
        )
        return [Reminder.from_record(r) for r in rows]

    async def cancel_pending_for_lead(self, lead_id: int) -> int:
        """Cancel every open step of the lead, whatever its plan version; returns the count.

        Completed and skipped steps keep their history.
        """
        status = await self._db.execute(
            """
            UPDATE scheduled_reminders SET status = 'cancelled'
            WHERE lead_id = $1 AND status IN ('pending', 'sent')
            """,
            lead_id,
        )
        return affected_rows(status)

    async def close_older_versions(self, lead_id: int, plan_version: int, revision: int) -> int:
        """Cancel the open rows of the lead's replaced plans (the plan state no longer holds
        them); stamped with the plan's revision so a late write of an old plan is dropped."""
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

    async def mark_reminded(
        self, lead_id: int, plan_version: int, step_id: int, at: datetime, message_id: int
    ) -> Reminder | None:
        """Record a sent reminder; None if the step is gone or no longer open.

        Counting is keyed by the Telegram message: a retry reporting the same message_id
        (the delivery ledger returns it) doesn't count the reminder twice. A step the owner
        resolved in the meantime is not reopened.
        """
        row = await self._db.fetchrow(
            """
            UPDATE scheduled_reminders SET
                status = 'sent',
                reminder_count = reminder_count
                    + CASE WHEN message_id IS DISTINCT FROM $5::bigint THEN 1 ELSE 0 END,
                last_reminded_at = CASE WHEN message_id IS DISTINCT FROM $5
                                        THEN $4::timestamptz ELSE last_reminded_at END,
                message_id = $5
            WHERE lead_id = $1 AND plan_version = $2 AND step_id = $3
              AND status IN ('pending', 'sent')
            RETURNING *
            """,
            lead_id,
            plan_version,
            step_id,
            at,
            message_id,
        )
        return None if row is None else Reminder.from_record(row)

    async def update_status(
        self,
        lead_id: int,
        plan_version: int,
        step_id: int,
        status: ReminderStatus,
        at: datetime,
    ) -> Reminder | None:
        """Set a step's status; None if no such step.

        completed_at: set to `at` on the first transition to completed (a repeat keeps
        the original time), cleared when the step is reopened, kept otherwise.
        """
        row = await self._db.fetchrow(
            """
            UPDATE scheduled_reminders SET
                status = $4,
                completed_at = CASE
                    WHEN $4 = 'completed' THEN
                        CASE WHEN status = 'completed' AND completed_at IS NOT NULL
                             THEN completed_at ELSE $5::timestamptz END
                    WHEN $4 IN ('pending', 'sent') THEN NULL
                    ELSE completed_at
                END
            WHERE lead_id = $1 AND plan_version = $2 AND step_id = $3
            RETURNING *
            """,
            lead_id,
            plan_version,
            step_id,
            ReminderStatus(status).value,
            at,
        )
        return None if row is None else Reminder.from_record(row)

    async def snooze(
        self, lead_id: int, plan_version: int, step_id: int, until: datetime
    ) -> Reminder | None:
        """Move an open step to `until` and restart its reminder round.

        A retry with the same `until` doesn't count a second snooze. None if the step is
        gone or already resolved.
        """
        row = await self._db.fetchrow(
            """
            UPDATE scheduled_reminders SET
                snooze_count = snooze_count
                    + CASE WHEN due_at IS DISTINCT FROM $4::timestamptz THEN 1 ELSE 0 END,
                due_at = $4,
                reminder_count = 0,
                status = 'pending'
            WHERE lead_id = $1 AND plan_version = $2 AND step_id = $3
              AND status IN ('pending', 'sent')
            RETURNING *
            """,
            lead_id,
            plan_version,
            step_id,
            until,
        )
        return None if row is None else Reminder.from_record(row)

    async def delete_for_lead(self, lead_id: int) -> int:
        """Remove all of the lead's steps (every version); returns the count."""
        status = await self._db.execute(
            "DELETE FROM scheduled_reminders WHERE lead_id = $1", lead_id
        )
        return affected_rows(status)

    async def get_for_lead(self, lead_id: int) -> list[Reminder]:
        """Steps of the lead's current (highest) plan version, in step order."""
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
        self, lead_id: int, step_id: int, plan_version: int | None = None
    ) -> Reminder | None:
        """One step of the given plan version, by default the lead's current one."""
        row = await self._db.fetchrow(
            f"""
            SELECT * FROM scheduled_reminders
            WHERE lead_id = $1 AND step_id = $2
              AND plan_version = COALESCE($3::int, {_CURRENT_VERSION})
            """,
            lead_id,
            step_id,
            plan_version,
        )
        return None if row is None else Reminder.from_record(row)
