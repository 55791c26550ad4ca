"""Row models: one pydantic model per table, built straight from asyncpg records.

Status enums mirror the CHECK constraints of migrations/ (tests/test_status_enums.py holds
them to the constraints a migrated database has). They are defined here rather than
imported from workflows/ so storage stays independent of it; StrEnum values compare equal
to the workflow's own enums' values (the same test checks they agree).
"""

from __future__ import annotations

import json
from datetime import datetime, time
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator


class LeadStatus(StrEnum):
    ANALYZED = "analyzed"
    REACHED_OUT = "reached_out"
    MEETING_BOOKED = "meeting_booked"
    IN_PROGRESS = "in_progress"
    CLOSED_WON = "closed_won"
    CLOSED_LOST = "closed_lost"


CLOSED_LEAD_STATUSES = frozenset({LeadStatus.CLOSED_WON, LeadStatus.CLOSED_LOST})


class ReminderStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


OPEN_REMINDER_STATUSES = frozenset({ReminderStatus.PENDING, ReminderStatus.SENT})


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"


def _json_text(value: Any) -> Any:
    """Accept JSON as text too: a connection without the pool's jsonb codec returns str."""
    return json.loads(value) if isinstance(value, str) else value


JsonList = Annotated[list[dict[str, Any]], BeforeValidator(_json_text)]
JsonDict = Annotated[dict[str, Any], BeforeValidator(_json_text)]


class Row(BaseModel):
    @classmethod
    def from_record(cls, record: Any) -> Self:
        """Build from an asyncpg Record (or any mapping of column names)."""
        return cls.model_validate(dict(record))


class Lead(Row):
    id: int
    telegram_id: int
    prospect_name: str
    prospect_company: str | None = None
    prospect_title: str | None = None
    original_context: str | None = None
    status: LeadStatus = LeadStatus.ANALYZED
    engagement_plan: JsonList | None = None
    plan_version: int = 1
    created_at: datetime
    updated_at: datetime

    @property
    def next_plan_version(self) -> int:
        """The version a new enrolment starts at: after every plan this lead already had."""
        return self.plan_version + 1 if self.engagement_plan is not None else 1


class Reminder(Row):
    """One plan step as mirrored into scheduled_reminders."""

    id: int
    lead_id: int
    telegram_id: int
    step_id: int
    due_at: datetime | None = None
    status: ReminderStatus = ReminderStatus.PENDING
    snooze_count: int = 0
    reminder_count: int = 0
    last_reminded_at: datetime | None = None
    draft_text: str | None = None
    completed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    plan_version: int = 1
    action_type: str | None = None
    description: str | None = None
    message_id: int | None = None
    revision: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_REMINDER_STATUSES


class ReminderUpsert(BaseModel):
    """A step as the workflow wants it stored; `revision` orders competing writes."""

    lead_id: int
    telegram_id: int
    plan_version: int = 1
    step_id: int
    action_type: str | None = None
    description: str | None = None
    draft_text: str | None = None
    due_at: datetime | None = None
    status: ReminderStatus = ReminderStatus.PENDING
    snooze_count: int = 0
    reminder_count: int = 0
    last_reminded_at: datetime | None = None
    completed_at: datetime | None = None
    message_id: int | None = None
    revision: int = 0


class ActivityLogEntry(Row):
    id: int
    lead_id: int
    telegram_id: int
    activity_type: str
    content: str | None = None
    metadata: JsonDict = {}
    dedupe_key: str | None = None
    created_at: datetime


class User(Row):
    telegram_id: int
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    timezone: str = "UTC"
    window_start: time = time(9, 0)
    window_end: time = time(20, 0)
    workdays_only: bool = True
    paused_until: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Delivery(Row):
    """A delivery-ledger row; status 'sent' with a message_id means: don't send again."""

    id: int
    delivery_key: str
    lead_id: int | None = None
    telegram_id: int
    status: DeliveryStatus
    message_id: int | None = None
    attempts: int = 1
    created_at: datetime
    updated_at: datetime
    # The lease (migrations/004): which attempt may be sending, and until when.
    attempt_id: str | None = None
    lease_expires_at: datetime | None = None
    slot_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def already_sent(self) -> bool:
        return self.status == DeliveryStatus.SENT and self.message_id is not None
