"""What /leads and a lead's detail show, read from the mirror in one owner-scoped query.

The plan's status is the latest plan lifecycle line of `lead_activity_log` (the workflow
logs every transition) and its steps are the `scheduled_reminders` rows of the lead's
current plan version. So the list needs no Temporal query and works while no worker runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from storage.db import Queryable
from storage.models import CLOSED_LEAD_STATUSES, Lead, Reminder


class MirroredPlanStatus(StrEnum):
    """Mirrors workflows.models.PlanStatus (storage does not import workflows)."""

    AWAITING_APPROVAL = "awaiting_approval"
    ACTIVE = "active"
    PAUSED = "paused"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# Which log line leaves the plan in which status.
LIFECYCLE: dict[str, MirroredPlanStatus] = {
    "plan_created": MirroredPlanStatus.AWAITING_APPROVAL,
    "plan_replaced": MirroredPlanStatus.AWAITING_APPROVAL,
    "plan_approved": MirroredPlanStatus.ACTIVE,
    "plan_resumed": MirroredPlanStatus.ACTIVE,
    "plan_unblocked": MirroredPlanStatus.ACTIVE,
    "plan_paused": MirroredPlanStatus.PAUSED,
    "plan_blocked": MirroredPlanStatus.BLOCKED,
    "plan_cancelled": MirroredPlanStatus.CANCELLED,
    "plan_completed": MirroredPlanStatus.COMPLETED,
}
FINISHED = frozenset({MirroredPlanStatus.COMPLETED, MirroredPlanStatus.CANCELLED})


class PlanSummaryRow(BaseModel):
    """A lead with its plan at a glance: status and the current (next open) step."""

    lead: Lead
    plan_status: MirroredPlanStatus | None = None
    steps: int = 0
    current_position: int | None = None
    current_status: str | None = None
    current_due_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.plan_status is not None and self.plan_status not in FINISHED


class LeadTimeline(BaseModel):
    lead: Lead
    plan_status: MirroredPlanStatus | None = None
    steps: list[Reminder] = []

    @property
    def running(self) -> bool:
        return self.plan_status is not None and self.plan_status not in FINISHED

    @property
    def current(self) -> Reminder | None:
        return next((s for s in self.steps if s.is_open), None)


_SUMMARY_COLUMNS = ("total_leads", "last_event", "steps", "position", "cur_status", "cur_due_at")

_LAST_EVENT = """
LEFT JOIN LATERAL (
    SELECT a.activity_type FROM lead_activity_log a
    WHERE a.lead_id = l.id AND a.activity_type = ANY($2::text[])
    ORDER BY a.created_at DESC, a.id DESC LIMIT 1
) ev ON true
"""


class LeadViews:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def page(
        self, telegram_id: int, limit: int, offset: int
    ) -> tuple[int, list[PlanSummaryRow]]:
        """(total leads of the owner, this page newest first): one statement."""
        rows = await self._db.fetch(
            f"""
            WITH l AS (
                SELECT * FROM lead_registry WHERE telegram_id = $1
                ORDER BY created_at DESC, id DESC
                LIMIT $3 OFFSET $4
            )
            SELECT l.*,
                   (SELECT count(*) FROM lead_registry WHERE telegram_id = $1) AS total_leads,
                   ev.activity_type AS last_event,
                   st.steps, cur.position, cur.status AS cur_status, cur.due_at AS cur_due_at
            FROM l
            {_LAST_EVENT}
            LEFT JOIN LATERAL (
                SELECT count(*) AS steps FROM scheduled_reminders r
                WHERE r.lead_id = l.id AND r.plan_version = l.plan_version
            ) st ON true
            LEFT JOIN LATERAL (
                SELECT r.status, r.due_at,
                       (SELECT count(*) FROM scheduled_reminders p
                        WHERE p.lead_id = l.id AND p.plan_version = l.plan_version
                          AND p.step_id <= r.step_id) AS position
                FROM scheduled_reminders r
                WHERE r.lead_id = l.id AND r.plan_version = l.plan_version
                  AND r.status IN ('pending', 'sent')
                ORDER BY r.step_id LIMIT 1
            ) cur ON true
            ORDER BY l.created_at DESC, l.id DESC
            """,
            telegram_id,
            list(LIFECYCLE),
            limit,
            offset,
        )
        if not rows and offset:
            total = await self._db.fetchval(
                "SELECT count(*) FROM lead_registry WHERE telegram_id = $1", telegram_id
            )
            return int(total), []
        total = int(rows[0]["total_leads"]) if rows else 0
        return total, [_summary(r) for r in rows]

    async def blocked(self, telegram_id: int) -> list[Lead]:
        """The owner's open leads whose plan is blocked (Telegram refused to deliver)."""
        rows = await self._db.fetch(
            f"""
            SELECT l.* FROM lead_registry l
            {_LAST_EVENT.replace("$2", "$3")}
            WHERE l.telegram_id = $1 AND ev.activity_type = 'plan_blocked'
              AND NOT (l.status = ANY($2::text[]))
            ORDER BY l.id
            """,
            telegram_id,
            [s.value for s in CLOSED_LEAD_STATUSES],
            list(LIFECYCLE),
        )
        return [Lead.from_record(r) for r in rows]

    async def timeline(self, lead_id: int, telegram_id: int) -> LeadTimeline | None:
        """The owner's lead with its current plan's rows; None for a foreign or missing lead."""
        rows = await self._db.fetch(
            f"""
            SELECT to_jsonb(l) AS lead, ev.activity_type AS last_event,
                   to_jsonb(r) AS step
            FROM lead_registry l
            {_LAST_EVENT}
            LEFT JOIN scheduled_reminders r
                   ON r.lead_id = l.id AND r.plan_version = l.plan_version
            WHERE l.id = $1 AND l.telegram_id = $3
            ORDER BY r.step_id
            """,
            lead_id,
            list(LIFECYCLE),
            telegram_id,
        )
        if not rows:
            return None
        first = rows[0]
        return LeadTimeline(
            lead=Lead.model_validate(_json(first["lead"])),
            plan_status=_status(first["last_event"]),
            steps=[Reminder.model_validate(_json(r["step"])) for r in rows if r["step"]],
        )


def _json(value: object) -> object:
    """jsonb arrives decoded from the app's pool, as text from a bare connection."""
    return json.loads(value) if isinstance(value, str) else value


def _status(event: str | None) -> MirroredPlanStatus | None:
    return None if event is None else LIFECYCLE.get(event)


def _summary(record: Any) -> PlanSummaryRow:
    row = dict(record)
    extra = {k: row.pop(k) for k in _SUMMARY_COLUMNS}
    return PlanSummaryRow(
        lead=Lead.model_validate(row),
        plan_status=_status(extra["last_event"]),
        steps=extra["steps"] or 0,
        current_position=extra["position"],
        current_status=extra["cur_status"],
        current_due_at=extra["cur_due_at"],
    )
