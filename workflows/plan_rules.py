"""The plan's transition rules: pure, synchronous, total.

Everything that decides what a plan does lives here, as plain methods over a
`PlanState`: what is due next, what an owner action changes, how a pause or an
escalation round moves the clock. Nothing here awaits, does I/O or raises on a
reachable state, so

- the workflow's handlers apply a whole state change in one synchronous call, before
  their first `await` (no other handler or the run loop can see a half-made state);
- the run loop can ask "what is due?" in any state a handler can leave;
- the rules are unit-tested without Temporal (tests/test_plan_rules.py).

Refusals (`check_*`) raise the typed `ApplicationError`s of `workflows.errors`, which a
validator turns into an answer for the owner and a handler into a failed update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from workflows.errors import Rejection, rejected
from workflows.models import (
    TERMINAL_PLAN_STATUSES,
    EscalationPolicy,
    PlanState,
    PlanStatus,
    PlanStep,
    Schedule,
    StepAction,
    StepState,
    StepStatus,
)
from workflows.timing import days, fit_to_window, hours


class DueKind(StrEnum):
    RESUME = "resume"  # a vacation pause ends
    FIRST = "first"  # the first reminder of a round
    NUDGE = "nudge"  # a later reminder of the round
    AUTO_SNOOZE = "auto_snooze"  # the round went unanswered


@dataclass(frozen=True)
class Due:
    kind: DueKind
    step_id: int | None = None

    @property
    def is_send(self) -> bool:
        """A reminder goes out (the only thing a plan wakes early for: its send lead)."""
        return self.kind in (DueKind.FIRST, DueKind.NUDGE)


@dataclass(frozen=True)
class SendTicket:
    """What a reminder send was for; its result is recorded against this, not the live step."""

    plan_version: int
    step_id: int
    snooze_count: int
    reminder_count: int  # before this send


class PlanRules:
    """The rules over one plan's state; the workflow holds one and calls it synchronously.

    `spaced` selects the escalation clock: each nudge counts its gap from the previous
    reminder actually sent (so an outage or a block never bursts), instead of from the
    round's first reminder (plans recorded before that rule replay with the old clock).
    """

    def __init__(
        self, state: PlanState, escalation: EscalationPolicy, day_seconds: int, spaced: bool
    ) -> None:
        self.state = state
        self.escalation = escalation
        self.day_seconds = day_seconds
        self.spaced = spaced

    # ------------------------------------------------------------------ time

    def add_days(self, base: datetime, n: float) -> datetime:
        return base + days(n, self.day_seconds)

    def fit(self, moment: datetime) -> datetime:
        return fit_to_window(moment, self.state.schedule, self.day_seconds)

    def offsets(self) -> list[timedelta]:
        """When each reminder of a round goes out, counted from the round's first one."""
        nudges = [hours(h, self.day_seconds) for h in self.escalation.nudge_after_hours]
        return [timedelta(0), *nudges][: self.escalation.max_reminders]

    def give_up_after(self) -> timedelta:
        return hours(self.escalation.auto_snooze_after_hours, self.day_seconds)

    # ------------------------------------------------------------------ queries

    @property
    def is_open(self) -> bool:
        return self.state.status not in TERMINAL_PLAN_STATUSES

    def next_wake(self) -> datetime | None:
        """The next moment the plan must act by itself, or None to wait for the owner."""
        st = self.state
        if st.status == PlanStatus.PAUSED:
            return st.paused_until
        cur = st.current
        if st.status != PlanStatus.ACTIVE or cur is None or not cur.is_open:
            return None
        if cur.status == StepStatus.PENDING:
            return cur.due_at if cur.due_at is not None else st.target_at
        return self._next_escalation(cur)

    def _next_escalation(self, cur: StepState) -> datetime | None:
        offsets = self.offsets()
        count = cur.reminder_count
        if self.spaced:
            anchor = self.state.escalate_from or cur.last_reminded_at
            if anchor is None:
                return None
            if 0 < count < len(offsets):
                gap = offsets[count] - offsets[count - 1]
            elif count == 0:
                gap = timedelta(0)
            else:
                gap = self.give_up_after()
            return self.fit(anchor + gap)
        start = self.state.round_started_at or cur.last_reminded_at
        if start is None:
            return None
        if count < len(offsets):
            return self.fit(start + offsets[count])
        return self.fit(start + offsets[-1] + self.give_up_after())

    def due(self, now: datetime) -> Due | None:
        """What is due at `now`, if anything (a handler may have moved it since the timer)."""
        wake = self.next_wake()
        if wake is None or wake > now:
            return None
        st = self.state
        if st.status == PlanStatus.PAUSED:
            return Due(DueKind.RESUME)
        cur = st.current
        if cur is None:
            return None
        if cur.status == StepStatus.PENDING:
            return Due(DueKind.FIRST, cur.step_id)
        if cur.reminder_count < len(self.offsets()):
            return Due(DueKind.NUDGE, cur.step_id)
        return Due(DueKind.AUTO_SNOOZE, cur.step_id)

    def ticket(self, step: StepState) -> SendTicket:
        return SendTicket(
            plan_version=self.state.plan_version,
            step_id=step.step_id,
            snooze_count=step.snooze_count,
            reminder_count=step.reminder_count,
        )

    # ------------------------------------------------------------------ refusals

    def check_open(self, cancelling: bool) -> None:
        st = self.state
        if cancelling or st.status == PlanStatus.CANCELLED:
            raise rejected(Rejection.PLAN_FINISHED, "plan already cancelled")
        if st.status == PlanStatus.COMPLETED:
            raise rejected(Rejection.PLAN_FINISHED, "plan already completed")

    def check_answer(self, action: StepAction, cancelling: bool) -> StepState:
        """Only the current step of the current plan version accepts an answer."""
        self.check_open(cancelling)
        st = self.state
        if st.status == PlanStatus.AWAITING_APPROVAL:
            raise rejected(Rejection.NOT_STARTED, "plan not started yet")
        step = st.step(action.step_id)
        if action.plan_version != st.plan_version or step is None:
            raise rejected(Rejection.ALREADY_HANDLED, "already handled: this plan was replaced")
        if not step.is_open:
            raise rejected(
                Rejection.ALREADY_HANDLED,
                f"already handled: step {st.position(step.step_id)} is {step.status.value}",
            )
        if step.step_id != st.current_step_id:
            raise rejected(Rejection.NOT_DUE, f"step {st.position(step.step_id)} is not due yet")
        return step

    def check_approve(self, plan_version: int | None, cancelling: bool) -> None:
        self.check_open(cancelling)
        st = self.state
        if st.status != PlanStatus.AWAITING_APPROVAL:
            raise rejected(Rejection.ALREADY_HANDLED, f"already handled: plan is {st.status.value}")
        if plan_version is not None and plan_version != st.plan_version:
            raise rejected(
                Rejection.ALREADY_HANDLED, "already handled: this draft was replaced by a newer one"
            )
        if not st.steps and st.last_error is not None and not st.drafting:
            raise rejected(Rejection.DRAFT_FAILED, f"the draft failed: {st.last_error}")
        if st.drafting or not st.steps:
            raise rejected(Rejection.BUSY, "the plan is still being drafted")

    def check_pause(self, until: datetime | None, now: datetime, cancelling: bool) -> None:
        self.check_open(cancelling)
        st = self.state
        if st.status not in (PlanStatus.ACTIVE, PlanStatus.PAUSED):
            raise rejected(
                Rejection.WRONG_STATUS,
                f"only a running plan can be paused (plan is {st.status.value})",
            )
        if until is not None and until <= now:
            raise rejected(Rejection.INVALID, "pause end must be in the future")

    def check_resume(self, cancelling: bool) -> None:
        self.check_open(cancelling)
        st = self.state
        if st.status not in (PlanStatus.PAUSED, PlanStatus.BLOCKED):
            raise rejected(
                Rejection.WRONG_STATUS, f"plan is not paused (plan is {st.status.value})"
            )

    def check_replace(self, cancelling: bool) -> None:
        self.check_open(cancelling)
        if self.state.drafting:
            raise rejected(Rejection.BUSY, "a plan is being drafted already")

    # ------------------------------------------------------------------ transitions

    def set_current(self, step: StepState, target: datetime, now: datetime) -> None:
        st = self.state
        st.current_step_id = step.step_id
        st.target_at = target
        st.round_started_at = None
        st.escalate_from = None
        step.due_at = self.fit(target)
        if st.status == PlanStatus.PAUSED:
            # A new target set while paused counts from now: the pause so far is spent.
            st.paused_at = now
        self.project()

    def project(self) -> None:
        """Projected due times of the steps after the current one, if all go on time."""
        st = self.state
        cur = st.current
        if cur is None or cur.due_at is None:
            return
        prev, prev_due = cur, cur.due_at
        for step in st.steps[st.position(cur.step_id) :]:
            prev_due = self.fit(self.add_days(prev_due, step.delay_days - prev.delay_days))
            step.due_at = prev_due
            prev = step

    def activate(self, now: datetime) -> None:
        st = self.state
        st.status = PlanStatus.ACTIVE
        st.approved_at = now
        st.current_step_id = None
        if st.steps:
            first = st.steps[0]
            self.set_current(first, self.add_days(now, first.delay_days), now)
        else:
            st.status = PlanStatus.COMPLETED

    def resolve(self, step: StepState, status: StepStatus, now: datetime) -> None:
        """Done or skipped: the next step counts its gap from now, so late answers never bunch."""
        st = self.state
        step.status = status
        step.completed_at = now  # when the step was closed, done or skipped
        idx = st.position(step.step_id)
        if idx <= 0 or idx >= len(st.steps):
            st.current_step_id = None
            st.target_at = None
            st.escalate_from = None
            st.status = PlanStatus.COMPLETED
            return
        nxt = st.steps[idx]
        self.set_current(nxt, self.add_days(now, nxt.delay_days - step.delay_days), now)

    def snooze(self, step: StepState, until: datetime, now: datetime) -> None:
        step.status = StepStatus.PENDING
        step.snooze_count += 1
        step.reminder_count = 0
        self.set_current(step, until, now)

    def pause(self, now: datetime, until: datetime | None) -> None:
        st = self.state
        if st.status != PlanStatus.PAUSED:
            st.paused_at = now
        st.status = PlanStatus.PAUSED
        st.paused_until = until

    def resume(self, now: datetime) -> None:
        """Continue with the delay that was left when the pause began."""
        st = self.state
        was_paused = st.status == PlanStatus.PAUSED
        st.status = PlanStatus.ACTIVE
        st.blocked_reason = None
        if was_paused and st.paused_at is not None:
            shift = max(timedelta(0), now - st.paused_at)
            cur = st.current
            if cur is not None and cur.status == StepStatus.PENDING and st.target_at is not None:
                self.set_current(cur, st.target_at + shift, now)
            else:
                if st.round_started_at is not None:
                    st.round_started_at += shift
                if st.escalate_from is not None:
                    st.escalate_from += shift
        st.paused_at = None
        st.paused_until = None

    def block(self, reason: str) -> bool:
        """Telegram refuses to deliver; a running plan waits for its owner. False: nothing changed."""
        st = self.state
        if st.status != PlanStatus.ACTIVE:
            return False
        st.status = PlanStatus.BLOCKED
        st.blocked_reason = reason
        return True

    def close_open_steps(self) -> None:
        for step in self.state.steps:
            if step.is_open:
                step.status = StepStatus.CANCELLED

    def replace(self, steps: list[PlanStep], now: datetime, *, await_approval: bool) -> None:
        """A new plan version: old open steps cancelled; runs at once unless it needs approval."""
        st = self.state
        status = st.status
        self.close_open_steps()
        st.plan_version += 1
        st.steps = [StepState.from_step(s) for s in steps]
        st.current_step_id = None
        st.target_at = None
        st.escalate_from = None
        st.round_started_at = None
        st.blocked_reason = None
        st.last_error = None
        if await_approval or status == PlanStatus.AWAITING_APPROVAL:
            st.status = PlanStatus.AWAITING_APPROVAL
            st.paused_at = st.paused_until = None
            return
        until = st.paused_until
        self.activate(now)
        if status == PlanStatus.PAUSED:
            st.status = PlanStatus.PAUSED
            st.paused_at = now
            st.paused_until = until

    def cancel(self, reason: str) -> None:
        st = self.state
        self.close_open_steps()
        st.status = PlanStatus.CANCELLED
        st.cancel_reason = reason
        st.current_step_id = None
        st.drafting = False

    def set_schedule(self, schedule: Schedule) -> None:
        """A new timezone or window moves the pending due times of this running plan too."""
        st = self.state
        st.schedule = schedule
        cur = st.current
        if cur is not None and cur.status == StepStatus.PENDING and st.target_at is not None:
            cur.due_at = self.fit(st.target_at)
            self.project()

    def record_send(self, ticket: SendTicket, sent_at: datetime, message_id: int | None) -> bool:
        """A reminder went out: record it on the step it was for, whatever happened meanwhile.

        True when the step it was for is still the current round's (the normal case).
        """
        st = self.state
        step = st.step(ticket.step_id)
        if ticket.plan_version != st.plan_version or step is None:
            return False  # the plan was replaced; the old rows are closed
        step.last_reminded_at = sent_at
        step.message_id = message_id
        if step.snooze_count != ticket.snooze_count:
            return False  # snoozed meanwhile: a fresh round, its count starts at 0
        step.reminder_count = ticket.reminder_count + 1
        if not step.is_open:
            return False  # answered meanwhile: the reminder still counts as sent
        step.status = StepStatus.SENT
        if step.step_id == st.current_step_id:
            st.escalate_from = sent_at
            if ticket.reminder_count == 0:
                st.round_started_at = sent_at
        return True
