"""Data exchanged with the engagement-plan workflow.

Everything here is plain pydantic, deterministic and I/O free, so the workflow, the
activities, the bot and the tests all share one definition of a plan.
"""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator, model_validator

MIN_STEPS = 5
MAX_STEPS = 8
MAX_DELAY_DAYS = 90
# A send waits at most this long for its due time (inside its 30-s start-to-close).
MAX_SEND_LEAD_SECONDS = 5.0
DESCRIPTION_MAX = 300
SUGGESTED_TEXT_MAX = 1500
TIMING_MAX = 100
ACTION_TYPE_MAX = 32


class StepStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


OPEN_STEP_STATUSES = frozenset({StepStatus.PENDING, StepStatus.SENT})


class PlanStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    ACTIVE = "active"
    PAUSED = "paused"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


TERMINAL_PLAN_STATUSES = frozenset({PlanStatus.COMPLETED, PlanStatus.CANCELLED})


class PlanStep(BaseModel):
    """One step as the planner drafts it: what to do and how many days after the start."""

    step_id: int = Field(ge=1)
    action_type: str = Field(min_length=1, max_length=ACTION_TYPE_MAX)
    description: str = Field(min_length=1, max_length=DESCRIPTION_MAX)
    suggested_text: str = Field(default="", max_length=SUGGESTED_TEXT_MAX)
    timing: str = Field(default="", max_length=TIMING_MAX)
    delay_days: int = Field(ge=0, le=MAX_DELAY_DAYS)


def check_steps(steps: list[PlanStep], *, min_steps: int = 1) -> list[PlanStep]:
    """Reject a plan the workflow cannot run: wrong size, duplicate ids, decreasing delays."""
    if not min_steps <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a plan needs {min_steps}–{MAX_STEPS} steps, got {len(steps)}")
    ids = [s.step_id for s in steps]
    if len(set(ids)) != len(ids):
        raise ValueError("step ids must be unique")
    delays = [s.delay_days for s in steps]
    if delays != sorted(delays):
        raise ValueError("delay_days must not decrease from one step to the next")
    return steps


class Schedule(BaseModel):
    """When the owner wants to be reminded: local timezone, daily window, workdays."""

    timezone: str = "UTC"
    window_start: time = time(9, 0)
    window_end: time = time(20, 0)
    workdays_only: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name like Europe/Berlin"
            ) from None
        return value

    @model_validator(mode="after")
    def _window_not_empty(self) -> Schedule:
        if self.window_start >= self.window_end:
            raise ValueError("the send window must start before it ends")
        return self


class EscalationPolicy(BaseModel):
    """How an unanswered reminder escalates; hours are real hours scaled by day_seconds."""

    nudge_after_hours: list[float] = Field(default_factory=lambda: [24.0, 72.0])
    max_reminders: int = Field(default=3, ge=1)
    # After the last unanswered reminder, how long to wait before auto-snoozing.
    auto_snooze_after_hours: float = Field(default=24.0, gt=0)
    auto_snooze_days: int = Field(default=7, ge=1)

    @field_validator("nudge_after_hours")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(h <= 0 for h in value) or value != sorted(value):
            raise ValueError("nudge_after_hours must be positive and increasing")
        return value


class StepState(BaseModel):
    """A step as the plan runs it; mirrored one-to-one into scheduled_reminders."""

    step_id: int
    action_type: str
    description: str
    suggested_text: str = ""
    timing: str = ""
    delay_days: int
    status: StepStatus = StepStatus.PENDING
    # Exact due time of the current step; a projection for later steps.
    due_at: datetime | None = None
    snooze_count: int = 0
    reminder_count: int = 0
    last_reminded_at: datetime | None = None
    completed_at: datetime | None = None
    message_id: int | None = None

    @classmethod
    def from_step(cls, step: PlanStep) -> StepState:
        return cls(**step.model_dump())

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STEP_STATUSES


class PlanState(BaseModel):
    """The whole plan as the Temporal UI, the bot and the mirror see it (the `state` query)."""

    lead_id: int
    telegram_id: int
    plan_version: int = 1
    status: PlanStatus = PlanStatus.AWAITING_APPROVAL
    steps: list[StepState] = Field(default_factory=list)
    current_step_id: int | None = None
    next_due_at: datetime | None = None
    approved_at: datetime | None = None
    # The current step's due time before the send window moved it; kept so a new
    # timezone or window re-fits from the original target, not from a shifted time.
    target_at: datetime | None = None
    # First reminder of the current escalation round (the clock of plans recorded
    # before nudges were spaced from the previous reminder).
    round_started_at: datetime | None = None
    # The moment the next escalation gap counts from: the last reminder actually sent,
    # shifted by any pause since. An outage or a block can delay a nudge, never bunch two.
    escalate_from: datetime | None = None
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    # While paused: how long was left on the clock, restored by resume.
    blocked_reason: str | None = None
    cancel_reason: str | None = None
    # Why the last plan generation failed, shown to the owner.
    last_error: str | None = None
    # A new draft is being generated (Regenerate); it arrives as a plan-ready notice.
    drafting: bool = False
    schedule: Schedule = Field(default_factory=Schedule)
    # Monotonic counter of mirror writes; the database keeps the newest.
    revision: int = 0

    def step(self, step_id: int) -> StepState | None:
        return next((s for s in self.steps if s.step_id == step_id), None)

    @property
    def current(self) -> StepState | None:
        return None if self.current_step_id is None else self.step(self.current_step_id)

    def position(self, step_id: int) -> int:
        """1-based position of a step, as shown to the owner ("step 2 of 6"); 0 if absent."""
        return next((i for i, s in enumerate(self.steps, 1) if s.step_id == step_id), 0)


class CancelRequest(BaseModel):
    reason: str = "cancelled by owner"


class PlanInput(BaseModel):
    """Everything one lead's plan needs; the only argument of the workflow."""

    lead_id: int
    telegram_id: int
    # None: the workflow generates the plan and waits for approval.
    steps: list[PlanStep] | None = None
    # Owner-supplied steps start without a separate approval step when this is set.
    approved: bool = False
    schedule: Schedule = Field(default_factory=Schedule)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    day_seconds: int = Field(default=86400, ge=1)
    # The first plan version of this enrolment. A lead enrolled again continues its
    # numbering, so rows, deliveries and log lines of earlier plans never collide.
    plan_version: int = Field(default=1, ge=1)
    # Continue-as-new after this many history events (Temporal's own hint also counts).
    history_event_limit: int = Field(default=5000, ge=100)
    # Wake this many seconds before a reminder is due; the send waits, heartbeating, for
    # the due time right before its HTTP call, so the workflow task, the activity's
    # dispatch and their queues are not in the lateness. 0 (plans started before, and
    # the default): the timer fires at the due time, as before.
    send_lead_seconds: float = Field(default=0.0, ge=0, le=MAX_SEND_LEAD_SECONDS)
    # Carried across continue-as-new; never set by callers.
    carried_state: PlanState | None = None

    @field_validator("steps")
    @classmethod
    def _runnable(cls, steps: list[PlanStep] | None) -> list[PlanStep] | None:
        """Reject a bad plan at the caller, before a workflow exists to fail on it."""
        return None if steps is None else check_steps(steps)


# ---- update, signal and activity payloads ----


class StepAction(BaseModel):
    """An owner's answer to one step; plan_version makes buttons of a replaced plan stale."""

    step_id: int
    plan_version: int


class SnoozeAction(StepAction):
    days: int = Field(ge=1, le=30)


class ApproveRequest(BaseModel):
    """Start the drafted plan the owner saw; another version is refused as already handled."""

    plan_version: int | None = None


class PauseRequest(BaseModel):
    until: datetime | None = None


class ReplacePlanRequest(BaseModel):
    """New steps, or None to have the planner draft a fresh plan."""

    steps: list[PlanStep] | None = None


class PlanSummary(BaseModel):
    """The workflow's result."""

    lead_id: int
    status: PlanStatus
    completed: int
    skipped: int
    cancelled: int
    reason: str | None = None


class LogEntry(BaseModel):
    """One lead_activity_log row; the key makes a retried write land once."""

    activity_type: str
    content: str
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    dedupe_key: str


class MirrorRequest(BaseModel):
    state: PlanState
    log: list[LogEntry] = Field(default_factory=list)


class ReminderKind(StrEnum):
    FIRST = "first"
    NUDGE = "nudge"


class ReminderRequest(BaseModel):
    """Send one reminder and mirror the plan: `state` is the plan as it will be once sent."""

    state: PlanState
    step_id: int
    kind: ReminderKind
    # Unique per (lead, plan version, step, round, reminder): the delivery ledger key.
    delivery_key: str
    # The due time, when the plan woke a send lead ahead of it: the send waits for it.
    not_before: datetime | None = None

    @property
    def step(self) -> StepState:
        step = self.state.step(self.step_id)
        assert step is not None
        return step


class NotSentReason(StrEnum):
    """Why the send activity sent nothing: the reminder was no longer wanted."""

    # The step was answered, skipped or cancelled, or its plan replaced, meanwhile.
    STEP_CLOSED = "step_closed"
    # The lead was closed (won/lost); the plan must end.
    LEAD_CLOSED = "lead_closed"
    # The plan changed (paused, snoozed, rescheduled) while the send waited for its due
    # time: the rows hold a newer revision than the one the send was decided at.
    SUPERSEDED = "superseded"


class ReminderResult(BaseModel):
    """What the send did: a message id and time, or the reason it sent nothing."""

    message_id: int | None = None
    sent_at: datetime | None = None
    not_sent: NotSentReason | None = None
    # With not_sent: the newest revision the lead's rows hold. Ahead of the workflow's
    # own only when the rows were written by a run this one does not know (an operator
    # reset); the workflow then writes past it instead of being refused forever.
    rows_revision: int | None = None


class NoticeKind(StrEnum):
    PLAN_READY = "plan_ready"
    PLAN_FAILED = "plan_failed"
    AUTO_SNOOZED = "auto_snoozed"
    PLAN_COMPLETED = "plan_completed"


# Priority keys of the sends (1 first). The telegram queue is rate-limited, so whenever
# sends come faster than the limit they wait in its backlog, which the server dispatches
# by priority (FIFO within one). A step's reminder is the promise "on time to the
# second"; a draft is awaited by someone looking at the chat; a nudge comes hours after
# the reminder it repeats; a completion or an auto-snooze only informs. Sends above
# URGENT_PRIORITY_KEY also leave the bot-wide window's urgent share free (storage/
# pacing.py). Without this, the completion notices of a burst of Done taps made the next
# reminders seconds late (BENCHMARKS.md).
SEND_PRIORITY: dict[ReminderKind | NoticeKind, int] = {
    ReminderKind.FIRST: 1,
    NoticeKind.PLAN_READY: 2,
    NoticeKind.PLAN_FAILED: 2,
    ReminderKind.NUDGE: 3,
    NoticeKind.AUTO_SNOOZED: 4,
    NoticeKind.PLAN_COMPLETED: 4,
}
URGENT_PRIORITY_KEY = 2


class NoticeRequest(BaseModel):
    """A message to the owner that is not a step reminder."""

    state: PlanState
    kind: NoticeKind
    delivery_key: str
    # For AUTO_SNOOZED: how many reminders went unanswered, and for how long it snoozed.
    unanswered: int = 0
    snooze_days: int = 0


class GeneratePlanRequest(BaseModel):
    lead_id: int
    telegram_id: int
    # 1 for a lead's first draft, one more for each regeneration (the built-in planner
    # takes another angle each time); None from runs that predate it: read from the mirror.
    draft_number: int | None = None
