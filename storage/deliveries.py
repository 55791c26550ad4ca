"""telegram_deliveries: the ledger that bounds duplicate Telegram sends (SPEC §4).

Protocol for a sender:
1. `begin(key)` records the attempt; a row that is already sent is reused, never resent.
2. `acquire(key, attempt_id, seconds)` leases the delivery right before the HTTP call.
   It succeeds only if no other attempt holds an unexpired lease, so a second attempt
   never sends while an earlier one may still be in flight.
3. Send with an HTTP timeout shorter than the lease, then `complete(key, …)`; on an answer
   that proves nothing went out (429, 4xx, 5xx) `release(key, attempt_id)`.

A duplicate remains possible only when Telegram delivered a message but its answer never
arrived (timeout, dropped connection, a crash before `complete`) and the lease expired.

All lease arithmetic uses the database's clock, so workers with skewed clocks agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from storage.db import Queryable
from storage.models import Delivery


@dataclass(frozen=True)
class StepRef:
    """The plan step a reminder is about."""

    lead_id: int
    plan_version: int
    step_id: int


@dataclass(frozen=True)
class LiveButtons:
    """A sent reminder message whose inline keyboard has not been cleared yet."""

    delivery_key: str
    telegram_id: int
    message_id: int


@dataclass(frozen=True)
class LeaseHeld:
    """Another attempt may be sending: wait `remaining` seconds before trying again."""

    attempt_id: str | None
    remaining: float


class DeliveryLedger:
    """Delivery rows keyed by delivery_key; pass a pool, or a connection."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def begin(
        self,
        delivery_key: str,
        telegram_id: int,
        lead_id: int | None = None,
        step: StepRef | None = None,
    ) -> Delivery:
        """Record an attempt: a new row ('sending', attempts 1) or the existing row with
        attempts + 1. Check `.already_sent` on the result before sending. A reminder names
        its `step`, so its buttons can be cleared once they are stale."""
        row = await self._db.fetchrow(
            """
            INSERT INTO telegram_deliveries AS d
                (delivery_key, telegram_id, lead_id, status, plan_version, step_id)
            VALUES ($1, $2, $3, 'sending', $4, $5)
            ON CONFLICT (delivery_key) DO UPDATE SET attempts = d.attempts + 1
            RETURNING *
            """,
            delivery_key,
            telegram_id,
            lead_id,
            step.plan_version if step else None,
            step.step_id if step else None,
        )
        return Delivery.from_record(row)

    async def lease_remaining(self, delivery_key: str, attempt_id: str) -> LeaseHeld | None:
        """The live lease of another attempt on this delivery, if there is one."""
        row = await self._db.fetchrow(
            """
            SELECT attempt_id,
                   extract(epoch FROM lease_expires_at - clock_timestamp())::float8 AS remaining
            FROM telegram_deliveries
            WHERE delivery_key = $1 AND status = 'sending'
              AND lease_expires_at > clock_timestamp() AND attempt_id IS DISTINCT FROM $2
            """,
            delivery_key,
            attempt_id,
        )
        return None if row is None else LeaseHeld(row["attempt_id"], row["remaining"])

    async def acquire(
        self, delivery_key: str, attempt_id: str, lease_seconds: float
    ) -> Delivery | LeaseHeld:
        """Lease the delivery for `lease_seconds`: the row (leased to us, or already sent),
        or LeaseHeld when another attempt's lease is still live. One atomic statement."""
        row = await self._db.fetchrow(
            """
            UPDATE telegram_deliveries SET
                attempt_id = $2,
                lease_expires_at = clock_timestamp() + make_interval(secs => $3)
            WHERE delivery_key = $1 AND status = 'sending'
              AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()
                   OR attempt_id = $2)
            RETURNING *
            """,
            delivery_key,
            attempt_id,
            lease_seconds,
        )
        if row is not None:
            return Delivery.from_record(row)
        current = await self.get(delivery_key)
        if current is None:
            raise LookupError(f"no delivery {delivery_key!r}: call begin() first")
        if current.already_sent:
            return current
        held = await self.lease_remaining(delivery_key, attempt_id)
        if held is None:  # expired between the two statements: try once more
            return await self.acquire(delivery_key, attempt_id, lease_seconds)
        return held

    async def release(self, delivery_key: str, attempt_id: str) -> None:
        """Give the lease back: our attempt proved that nothing went out."""
        await self._db.execute(
            """
            UPDATE telegram_deliveries SET attempt_id = NULL, lease_expires_at = NULL
            WHERE delivery_key = $1 AND attempt_id = $2 AND status = 'sending'
            """,
            delivery_key,
            attempt_id,
        )

    async def complete(
        self, delivery_key: str, message_id: int, sent_at: datetime | None = None
    ) -> Delivery | None:
        """Mark sent with the Telegram message id; the first completion's id is kept.

        None if begin was never called for the key.
        """
        row = await self._db.fetchrow(
            """
            UPDATE telegram_deliveries SET
                message_id = CASE WHEN status = 'sent' AND message_id IS NOT NULL
                                  THEN message_id ELSE $2 END,
                sent_at = CASE WHEN status = 'sent' AND sent_at IS NOT NULL
                               THEN sent_at ELSE coalesce($3, clock_timestamp()) END,
                status = 'sent',
                lease_expires_at = NULL
            WHERE delivery_key = $1
            RETURNING *
            """,
            delivery_key,
            message_id,
            sent_at,
        )
        return None if row is None else Delivery.from_record(row)

    async def live_buttons(self, step: StepRef, before_key: str | None = None) -> list[LiveButtons]:
        """The step's sent reminders that still show their buttons, oldest first; with
        `before_key`, only those recorded before that delivery (the newer ones stay live)."""
        rows = await self._db.fetch(
            """
            SELECT delivery_key, telegram_id, message_id FROM telegram_deliveries
            WHERE lead_id = $1 AND plan_version = $2 AND step_id = $3
              AND buttons_cleared_at IS NULL AND status = 'sent' AND message_id IS NOT NULL
              AND ($4::text IS NULL
                   OR id < (SELECT id FROM telegram_deliveries WHERE delivery_key = $4))
            ORDER BY id
            """,
            step.lead_id,
            step.plan_version,
            step.step_id,
            before_key,
        )
        return [LiveButtons(r["delivery_key"], r["telegram_id"], r["message_id"]) for r in rows]

    async def stale_buttons(self, settled_seconds: float, limit: int) -> list[LiveButtons]:
        """Reminders that still show buttons nobody should tap, oldest first: their step
        is closed in the mirror, or snoozed after this reminder, or a newer reminder of it
        went out. Only steps whose row has not changed for `settled_seconds`, so the
        clearing right after a tap or a nudge goes first. (Who answered does not matter:
        the bot, the Mini App, an operator through Temporal, a cancelled lead.) A pending
        row that does not know this message yet is a send whose mirror write is still to
        come (retried after an outage): its reminder is live."""
        rows = await self._db.fetch(
            """
            SELECT d.delivery_key, d.telegram_id, d.message_id FROM telegram_deliveries d
            JOIN scheduled_reminders r USING (lead_id, plan_version, step_id)
            WHERE d.step_id IS NOT NULL AND d.buttons_cleared_at IS NULL
              AND d.status = 'sent' AND d.message_id IS NOT NULL
              AND r.updated_at < clock_timestamp() - make_interval(secs => $1)
              AND (r.status IN ('completed', 'skipped', 'cancelled')
                   OR (r.status = 'pending' AND r.message_id = d.message_id)
                   OR EXISTS (
                    SELECT 1 FROM telegram_deliveries n
                    WHERE n.lead_id = d.lead_id AND n.plan_version = d.plan_version
                      AND n.step_id = d.step_id AND n.status = 'sent' AND n.id > d.id))
            ORDER BY d.id
            LIMIT $2
            """,
            settled_seconds,
            limit,
        )
        return [LiveButtons(r["delivery_key"], r["telegram_id"], r["message_id"]) for r in rows]

    async def buttons_cleared(self, delivery_key: str) -> None:
        """The message's keyboard is gone (or can never be removed): don't edit it again."""
        await self._db.execute(
            """
            UPDATE telegram_deliveries SET buttons_cleared_at = clock_timestamp()
            WHERE delivery_key = $1 AND buttons_cleared_at IS NULL
            """,
            delivery_key,
        )

    async def get(self, delivery_key: str) -> Delivery | None:
        row = await self._db.fetchrow(
            "SELECT * FROM telegram_deliveries WHERE delivery_key = $1", delivery_key
        )
        return None if row is None else Delivery.from_record(row)


class Withdrawn(StrEnum):
    """Why a reminder is no longer wanted (values match workflows' NotSentReason)."""

    STEP_CLOSED = "step_closed"
    LEAD_CLOSED = "lead_closed"
    SUPERSEDED = "superseded"


async def reminder_withdrawn(
    db: Queryable, lead_id: int, plan_version: int, step_id: int, revision: int | None = None
) -> Withdrawn | None:
    """Whether a reminder about to go out has lost its reason, as the mirror shows it.

    The lead is closed (or gone); or the step's row was answered, skipped or cancelled;
    or a newer plan version exists; or (given the plan `revision` the send was decided
    at) the plan changed since — paused, snoozed, rescheduled while the send waited for
    its due time — and the workflow must decide again. A step without a row yet is still
    wanted: the mirror may lag the workflow, and a reminder must never be lost to that.
    """
    row = await db.fetchrow(
        """
        SELECT l.status AS lead_status,
               (SELECT r.status FROM scheduled_reminders r
                 WHERE r.lead_id = l.id AND r.plan_version = $2 AND r.step_id = $3)
                   AS step_status,
               (SELECT max(r.revision) FROM scheduled_reminders r WHERE r.lead_id = l.id)
                   AS rows_revision,
               greatest(l.plan_version * (l.engagement_plan IS NOT NULL)::int,
                        (SELECT max(r.plan_version) FROM scheduled_reminders r
                          WHERE r.lead_id = l.id)) AS newest_version
        FROM lead_registry l WHERE l.id = $1
        """,
        lead_id,
        plan_version,
        step_id,
    )
    if row is None or row["lead_status"] in ("closed_won", "closed_lost"):
        return Withdrawn.LEAD_CLOSED
    if row["step_status"] in ("completed", "skipped", "cancelled"):
        return Withdrawn.STEP_CLOSED
    if row["newest_version"] is not None and row["newest_version"] > plan_version:
        return Withdrawn.STEP_CLOSED
    if revision is not None and (row["rows_revision"] or 0) > revision:
        return Withdrawn.SUPERSEDED
    return None


async def rows_revision(db: Queryable, lead_id: int) -> int | None:
    """The newest plan revision the lead's rows were written at."""
    revision: int | None = await db.fetchval(
        "SELECT max(revision) FROM scheduled_reminders WHERE lead_id = $1", lead_id
    )
    return revision
