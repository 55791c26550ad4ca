"""plan_cancel_outbox: a closed lead's `cancel` signal until it has reached the plan.

Closing a lead writes the status and this row in one transaction, so even a crash or a
Temporal outage right after cannot leave a closed lead with a plan that keeps reminding.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from storage.db import Queryable, affected_rows
from storage.models import CLOSED_LEAD_STATUSES


class PendingCancel(BaseModel):
    lead_id: int
    telegram_id: int
    reason: str
    attempts: int
    next_attempt_at: datetime


class PlanCancelOutbox:
    """Pass a pool, or a connection to share the status change's transaction."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def record(self, lead_id: int, telegram_id: int, reason: str) -> None:
        await self._db.execute(
            """
            INSERT INTO plan_cancel_outbox (lead_id, telegram_id, reason) VALUES ($1, $2, $3)
            ON CONFLICT (lead_id) DO UPDATE
                SET reason = EXCLUDED.reason, next_attempt_at = now()
            """,
            lead_id,
            telegram_id,
            reason,
        )

    async def delivered(self, lead_id: int) -> bool:
        tag = await self._db.execute("DELETE FROM plan_cancel_outbox WHERE lead_id = $1", lead_id)
        return affected_rows(tag) > 0

    async def failed(self, lead_id: int, error: str, retry_in_seconds: float) -> None:
        await self._db.execute(
            """
            UPDATE plan_cancel_outbox SET attempts = attempts + 1, last_error = $2,
                next_attempt_at = now() + make_interval(secs => $3)
            WHERE lead_id = $1
            """,
            lead_id,
            error[:500],
            retry_in_seconds,
        )

    async def due(self, limit: int = 100) -> list[PendingCancel]:
        """Rows to retry now. A lead reopened meanwhile is open again: its row is dropped,
        the owner's latest word decides whether the plan should stop."""
        await self._db.execute(
            """
            DELETE FROM plan_cancel_outbox o USING lead_registry l
            WHERE l.id = o.lead_id AND NOT (l.status = ANY($1::text[]))
            """,
            [s.value for s in CLOSED_LEAD_STATUSES],
        )
        rows = await self._db.fetch(
            """
            SELECT lead_id, telegram_id, reason, attempts, next_attempt_at
            FROM plan_cancel_outbox WHERE next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1
            """,
            limit,
        )
        return [PendingCancel.model_validate(dict(r)) for r in rows]

    async def pending(self, lead_id: int) -> PendingCancel | None:
        row = await self._db.fetchrow(
            """
            SELECT lead_id, telegram_id, reason, attempts, next_attempt_at
            FROM plan_cancel_outbox WHERE lead_id = $1
            """,
            lead_id,
        )
        return None if row is None else PendingCancel.model_validate(dict(row))
